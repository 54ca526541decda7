#!/usr/bin/env bash
# Autobahn|Testsuite fuzzingclient against celeris: every case, compression (12.*, 13.*) included.
#
# Usage: conformance/autobahn.sh /path/to/wstest [python-with-celeris]
#   CASES='6.*' conformance/autobahn.sh ...   runs a subset (one pattern; default every case)
#
# wstest is Autobahn's client; it runs on CPython 2.7 and this script installs nothing. One way:
#   python2.7 -m virtualenv /work/ab27 && /work/ab27/bin/pip install 'pip<21' autobahntestsuite
# The server is examples/websocket_echo.py on a free port of 127.0.0.1. Reports go to a fresh
# directory under /tmp (printed at the end), never into the repository. The last lines count each
# behaviour and list the cases that are neither OK nor INFORMATIONAL; the exit status is 1 if any.
set -euo pipefail
wstest=${1:?usage: $0 /path/to/wstest [python-with-celeris]}
python=${2:-python3}
cases=${CASES:-*}
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/celeris-autobahn.XXXXXX)
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" -m celeris_asgi examples.websocket_echo:app --host 127.0.0.1 --port "$port" --log-level warning \
    > "$out/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
"$python" - "$port" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 20
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("celeris did not start")
        time.sleep(0.1)
PY
cat > "$out/spec.json" <<JSON
{"outdir": "$out/reports", "servers": [{"agent": "celeris", "url": "ws://127.0.0.1:$port"}],
 "cases": ["$cases"], "exclude-cases": [], "exclude-agent-cases": {}}
JSON
(cd "$out" && "$wstest" -m fuzzingclient -s spec.json > wstest.log 2>&1)
echo "reports: $out/reports/index.html"
"$python" - "$out/reports/index.json" <<'PY'
import collections, json, sys
(cases,) = json.load(open(sys.argv[1])).values()
counts = collections.Counter(result["behavior"] for result in cases.values())
print(f"{len(cases)} cases:", ", ".join(f"{name} {count}" for name, count in sorted(counts.items())))
bad = [
    (case, result["behavior"], result["behaviorClose"])
    for case, result in sorted(cases.items(), key=lambda item: [int(part) for part in item[0].split(".")])
    if {result["behavior"], result["behaviorClose"]} - {"OK", "INFORMATIONAL"}
]
for case, behavior, close in bad:
    print(f"  {case}: {behavior} (close: {close})")
sys.exit(1 if bad else 0)
PY
