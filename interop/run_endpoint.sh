#!/bin/bash
# The QUIC interop runner's entry point; also works outside docker (HOST, PORT, WWW, CERTS, ...).
set -e
if [ -x /setup.sh ]; then
    /setup.sh
fi
cd "$(dirname "$0")/.."
echo "quicproxy interop endpoint: ROLE=$ROLE TESTCASE=$TESTCASE"
exec python3 -m interop.endpoint "$ROLE"
