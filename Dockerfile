# quicproxy: the image runs `quicproxy run -c /etc/quicproxy/quicproxy.toml`.
#   docker build -t quicproxy .
#   docker run -p 443:443/tcp -p 443:443/udp -v $PWD/my.toml:/etc/quicproxy/quicproxy.toml quicproxy
# Reload without dropping requests: docker kill --signal HUP <container>
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY quicproxy ./quicproxy
COPY protocols ./protocols
COPY interop ./interop
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[fast]'

FROM python:3.11-slim-bookworm
RUN useradd --system --home-dir /var/lib/quicproxy --create-home quicproxy \
    && mkdir -p /etc/quicproxy /run/quicproxy \
    && chown quicproxy /run/quicproxy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels quicproxy \
    && rm -rf /wheels
COPY packaging/quicproxy.toml /etc/quicproxy/quicproxy.toml
USER quicproxy
EXPOSE 443/tcp 443/udp
STOPSIGNAL SIGTERM
CMD ["quicproxy", "run", "-c", "/etc/quicproxy/quicproxy.toml"]
