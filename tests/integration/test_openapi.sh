#!/usr/bin/env bash
# test_openapi.sh: lint server/openapi.json (the OpenAPI 3.1 document vitd serves at
# /openapi.json) with Redocly CLI's recommended rules (tests/openapi: package.json + lockfile,
# installed by `scripts/deps.sh test` with npm ci); any error or warning fails.  Then the same
# linter on broken copies of the document, which must fail: a dangling $ref, an operation
# without responses, a path parameter that is not declared.
set -u
cd "$(dirname "$0")/../.."
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
cli=tests/openapi/node_modules/.bin/redocly
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1
if [ ! -x "$cli" ]; then
  bad "redocly installed" "$cli missing: run scripts/deps.sh test (npm ci in tests/openapi)"
  echo "$pass passed, $fail failed"; exit 1
fi
lint() { # file -> prints the summary; status 0 only when valid with no warnings
  local out rc
  out=$("$cli" lint --config tests/openapi/redocly.yaml --format=summary "$1" 2>&1); rc=$?
  echo "$out" | grep -E "^(error|warning) " | sed 's/^/    /'
  [ $rc -eq 0 ] && ! grep -qE "^(error|warning) " <<<"$out"
}
if lint server/openapi.json; then ok "server/openapi.json lints clean (Redocly recommended, no warnings)"
else bad "server/openapi.json lints clean" "see the problems above"; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mutate() { # name python-statement-on-d
  /usr/bin/python3 - "$tmp/$1.json" "$2" <<'PY'
import json, sys
d = json.load(open("server/openapi.json"))
exec(sys.argv[2])
json.dump(d, open(sys.argv[1], "w"))
PY
  if lint "$tmp/$1.json" >/dev/null; then bad "linter rejects $1" "a broken document passed"
  else ok "linter rejects $1"; fi
}
mutate dangling-ref 'd["paths"]["/classify"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/Nope"}'
mutate no-responses 'del d["paths"]["/v2"]["get"]["responses"]'
mutate undeclared-path-param 'd["paths"]["/v2/models/{model_name}/ready"]["get"]["parameters"] = []'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
