#!/usr/bin/env bash
# End-to-end test of the installed Debian package under a real systemd (PID 1). Runs as root
# inside the throwaway container that ../shared/systemd-sandbox boots, after it has run
# `apt-get install` of the .deb. Usage: in-container.sh [PORT]  (the index's port; 31411 as
# shipped, another one when .ci/e2e found 31411 taken: the container shares the host network)
# [SECTION...] (default: all, in order; see ALL_SECTIONS at the end).
# Every wait is bounded; the container (and whatever this script leaves) is thrown away.
set -euo pipefail

PORT="${1:-31411}"
SHIPPED_PORT=31411
INDEX=pypi-insiders-index.service
FETCH=pypi-insiders-fetch.service
TIMER=pypi-insiders-fetch.timer
PATH_UNIT=pypi-insiders-fetch.path
CONFIG=/etc/pypi-insiders/config.toml
STORE=/var/lib/pypi-insiders/store
WORK=/srv/e2e                  # not /tmp: the services have a private /tmp
INDEX_MAX_EXPOSURE=2.0
FETCH_MAX_EXPOSURE=3.5
# a default `apt install` of the .deb on a minimal bookworm with python3 (the sandbox's tree):
# 41 packages and 20.8 MB when measured, openssh-client and its xauth about 12 and 9 MB of them;
# then 53 and 114.6 MB with git (builds run in a real checkout: version scripts call git), which
# brings perl (about 60 MB with its modules), and bubblewrap (0.1 MB)
FOOTPRINT_MAX_PACKAGES=60
FOOTPRINT_MAX_MB=125
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1

start=$(date +%s)
step() { printf '\n[e2e %4ss] === %s\n' "$(( $(date +%s) - start ))" "$*"; }
ok() { printf '[e2e %4ss] ok: %s\n' "$(( $(date +%s) - start ))" "$*"; }
fail() {
    printf '[e2e %4ss] FAILED: %s\n' "$(( $(date +%s) - start ))" "$*" >&2
    echo "--- journal of the pypi-insiders units (last 80 lines)" >&2
    journalctl -u "$INDEX" -u "$FETCH" -u "$TIMER" -u "$PATH_UNIT" --no-pager -n 80 >&2 || true
    exit 1
}
upstream_pid=""
nginx_pid_file=""
cleanup() {
    if [ -n "$upstream_pid" ]; then
        kill "$upstream_pid" 2>/dev/null || true
        wait "$upstream_pid" 2>/dev/null || true
    fi
    if [ -n "$nginx_pid_file" ] && [ -f "$nginx_pid_file" ]; then
        kill "$(cat "$nginx_pid_file")" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$what (not within ${limit}s)"
        sleep 0.5
    done
    ok "$what"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
# (grep without -q: with pipefail, an early exit of grep would fail the writer with SIGPIPE)
page_has() { curl -sf --max-time 10 "$1" | grep -- "$2" >/dev/null; }
index_url() { echo "http://127.0.0.1:$PORT$1"; }
unit_active() { [ "$(systemctl is-active "$1")" = active ]; }

make_wheel() {  # make_wheel DIR NAME VERSION: a real, installable pure-Python wheel
    python3 - "$@" <<'PY'
import base64, hashlib, pathlib, sys, zipfile
out, name, version = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
out.mkdir(parents=True, exist_ok=True)
info = f"{name}-{version}.dist-info"
files = {
    f"{name}/__init__.py": f'VERSION = "{version}"\n',
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join(f"{p},{digest(t.encode())},{len(t.encode())}\n" for p, t in files.items())
files[f"{info}/RECORD"] = record + f"{info}/RECORD,,\n"
path = out / f"{name}-{version}-py3-none-any.whl"
with zipfile.ZipFile(path, "w") as whl:
    for member, text in files.items():
        whl.writestr(member, text)
print(path)
PY
}

git_commit() {  # git_commit VERSION: commit the project at VERSION and tag it vVERSION
    # ($GITTHING_REQUIRES: its [build-system] requires, a TOML array; setuptools alone by default)
    python3 - "$WORK/git/gitthing" "$1" "${GITTHING_REQUIRES:-[\"setuptools>=66\"]}" <<'PY'
import pathlib, sys
from dulwich import porcelain
from dulwich.repo import Repo
root, version, requires = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if not (root / ".git").exists():
    root.mkdir(parents=True, exist_ok=True)
    porcelain.init(str(root))
(root / "gitthing").mkdir(exist_ok=True)
(root / "gitthing" / "__init__.py").write_text(f'VERSION = "{version}"\n')
(root / "pyproject.toml").write_text(
    f'[build-system]\nrequires = {requires}\nbuild-backend = "setuptools.build_meta"\n\n'
    f'[project]\nname = "gitthing"\nversion = "{version}"\n\n'
    '[tool.setuptools]\npackages = ["gitthing"]\n')
repo = Repo(str(root))
porcelain.add(repo, [str(root / "pyproject.toml"), str(root / "gitthing" / "__init__.py")])
author = b"e2e <e2e@localhost>"
porcelain.commit(repo, message=f"gitthing {version}".encode(), author=author, committer=author)
porcelain.tag_create(repo, f"v{version}".encode(), author=author, message=b"release", annotated=True)
PY
    chmod -R a+rX "$WORK/git"
}

write_config() {  # write_config FALLBACK [EXTRA TOML]
    cat > "$CONFIG" <<EOF
# written by tests/e2e/in-container.sh
[server]
listen = "127.0.0.1:$PORT"

[upstream]
url = "http://127.0.0.1:$upstream_port/simple/"
fallback = "$1"

[repos.gitthing]
url = "$WORK/git/gitthing"
${2:-}
EOF
}

evil_repo() {  # a repository whose in-tree build backend attacks the fetcher; see test_fetch
    mkdir -p "$WORK/git/evil"
    printf '%s\n' "$PORT" > "$WORK/git/evil/PORT"
    printf '[build-system]\nrequires = []\nbuild-backend = "evil_backend"\nbackend-path = ["."]\n' \
        > "$WORK/git/evil/pyproject.toml"
    cat > "$WORK/git/evil/evil_backend.py" <<'BACKEND'
import base64, glob, hashlib, io, json, os, socket, subprocess, sys, tarfile, zipfile
PORT = int(open("PORT").read())
META = b"Metadata-Version: 2.1\nName: evil-proj\nVersion: 1.0\n\n"

def attempt(loot, label, action):
    try:
        loot[label] = str(action())[:200] or "(empty)"
    except Exception as error:
        loot[label] = "failed: " + type(error).__name__

def attack():
    loot = {}
    attempt(loot, "run-credentials", lambda: [open(p).read() for p in glob.glob("/run/credentials/*/*")]
            or "failed: none visible")
    attempt(loot, "credentials-dir", lambda: os.listdir("/etc/pypi-insiders/credentials"))
    attempt(loot, "users", lambda: open("/etc/pypi-insiders/users").read())
    # its own mirror is there, read-only (its checkout's objects live in it); another's is not
    attempt(loot, "mirrors", lambda: glob.glob("/var/cache/pypi-insiders/mirrors/gitthing-*")
            or "failed: none visible")
    attempt(loot, "store", lambda: open("/var/lib/pypi-insiders/store/gitthing/gitthing-66.6-py3-none-any.whl",
                                        "w").write("planted"))
    attempt(loot, "envs", lambda: [open(p + "/zz.pth", "w").write("import os\n") for p in glob.glob(
        "/var/cache/pypi-insiders/build-envs/envs/*/lib/python3*/site-packages")] or "failed: none visible")
    attempt(loot, "network", lambda: socket.create_connection(("127.0.0.1", PORT), timeout=3))
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "evil-daemon-e2e"],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    return json.dumps(loot).encode()

def build_sdist(directory, config_settings=None):
    data = attack()
    with tarfile.open(os.path.join(directory, "evil_proj-1.0.tar.gz"), "w:gz") as archive:
        for name, body in (("evil_proj-1.0/PKG-INFO", META), ("evil_proj-1.0/loot.json", data)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return "evil_proj-1.0.tar.gz"

def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def build_wheel(directory, config_settings=None, metadata_directory=None):
    info = "evil_proj-1.0.dist-info"
    files = {"loot.json": attack(), f"{info}/METADATA": META,
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: evil\nRoot-Is-Purelib: true\nTag: py3-none-any\n\n"}
    record = "".join(f"{p},{_hash(d)},{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    with zipfile.ZipFile(os.path.join(directory, "evil_proj-1.0-py3-none-any.whl"), "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return "evil_proj-1.0-py3-none-any.whl"
BACKEND
    python3 - "$WORK/git/evil" <<'PY'
import sys
from dulwich import porcelain
root = sys.argv[1]
porcelain.init(root)
porcelain.add(root, [f"{root}/{n}" for n in ("pyproject.toml", "evil_backend.py", "PORT")])
author = b"e2e <e2e@localhost>"
porcelain.commit(root, message=b"evil", author=author, committer=author)
porcelain.tag_create(root, b"v1.0", author=author, message=b"release", annotated=True)
PY
    chmod -R a+rX "$WORK/git"
}

check_exposure() {  # check_exposure UNIT MAX
    local out exposure
    out=$(systemd-analyze security --no-pager "$1")
    echo "$out"
    exposure=$(echo "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    [ -n "$exposure" ] || fail "no exposure level for $1"
    awk -v e="$exposure" -v m="$2" 'BEGIN { exit !(e <= m) }' || fail "$1: exposure $exposure > $2"
    ok "$1: exposure $exposure (at most $2)"
}

# ------------------------------------------------------------------------------------------
test_installed() {
    step "package installed: account, directories, units enabled"
    getent passwd pypi-insiders >/dev/null || fail "no user pypi-insiders"
    getent group pypi-insiders >/dev/null || fail "no group pypi-insiders"
    [ "$(stat -c '%U:%G %a' /etc/pypi-insiders/credentials)" = "root:pypi-insiders 750" ] \
        || fail "/etc/pypi-insiders/credentials is $(stat -c '%U:%G %a' /etc/pypi-insiders/credentials)"
    [ "$(stat -c '%U:%G' /var/lib/pypi-insiders)" = "pypi-insiders:pypi-insiders" ] || fail "owner of /var/lib/pypi-insiders"
    dpkg-query -W -f '${Conffiles}\n' pypi-insiders | grep "$CONFIG" >/dev/null || fail "$CONFIG is not a conffile"
    [ "$(systemctl is-enabled $INDEX)" = enabled ] || fail "$INDEX not enabled"
    [ "$(systemctl is-enabled $TIMER)" = enabled ] || fail "$TIMER not enabled"
    wait_for 10 "$TIMER is active" unit_active $TIMER
    [ "$(systemctl is-enabled $PATH_UNIT)" = enabled ] || fail "$PATH_UNIT not enabled"
    wait_for 10 "$PATH_UNIT is active" unit_active $PATH_UNIT
    [ "$(stat -c '%U:%G %a' /etc/pypi-insiders/webhook-secrets)" = "root:pypi-insiders 750" ] \
        || fail "/etc/pypi-insiders/webhook-secrets is $(stat -c '%U:%G %a' /etc/pypi-insiders/webhook-secrets)"
    [ "$(stat -c '%U:%G' /var/lib/pypi-insiders/fetch-queue)" = "pypi-insiders:pypi-insiders" ] \
        || fail "owner of /var/lib/pypi-insiders/fetch-queue"
    # as shipped, the upstream is the index pip on this machine uses
    pypi-insiders check-config | grep -E '^  upstream: https?://' >/dev/null \
        || fail "no default upstream from pip: $(pypi-insiders check-config | grep upstream)"
    ok "user, group, credentials directory, conffile, enabled units"
    # every file the man page names under /usr/share/doc is shipped
    for doc in $(zcat /usr/share/man/man1/pypi-insiders.1.gz | grep -o '/usr/share/doc/pypi[^ ]*' \
                 | sed 's/\\-/-/g; s/[.,;)]*$//' | sort -u); do
        [ -f "$doc" ] || fail "the man page names $doc, which is not installed"
    done

    if [ "$PORT" = "$SHIPPED_PORT" ]; then
        wait_for 60 "$INDEX active after install" unit_active $INDEX
        wait_for 20 "index answers on 127.0.0.1:$SHIPPED_PORT as shipped" page_has "$(index_url /simple/)" "<html"
        systemctl is-active --quiet $INDEX || fail "$INDEX not active"
    else
        echo "port $SHIPPED_PORT is taken on this host: the index will use $PORT"
    fi
}

# ------------------------------------------------------------------------------------------
test_footprint() {
    step "what a default apt install brought (recommends included, as apt does by default)"
    # The sandbox's apt-get install of the .deb is the one apt run in /var/log/apt/history.log
    # that installed pypi-insiders; its Install: line names every package that run brought.
    report=$(python3 - "$FOOTPRINT_MAX_PACKAGES" "$FOOTPRINT_MAX_MB" 2>&1 <<'PY'
import re, subprocess, sys
max_packages, max_mb = int(sys.argv[1]), float(sys.argv[2])
runs = open("/var/log/apt/history.log", encoding="utf-8").read().split("\n\n")
lines = [line for run in runs for line in run.splitlines()
         if line.startswith("Install: ") and re.search(r"\bpypi-insiders:", line)]
if not lines:
    sys.exit("no apt run in /var/log/apt/history.log installed pypi-insiders")
names = [entry.split(":")[0] for entry in re.findall(r"([^ ,]+) \([^)]*\)", lines[-1][len("Install: "):])]
sizes = subprocess.run(["dpkg-query", "-W", "-f", "${Installed-Size}\n", *names], capture_output=True,
                       text=True, check=True).stdout.split()
mb = sum(int(size) for size in sizes) / 1024
print(f"{len(names)} packages, {mb:.1f} MB installed: {' '.join(sorted(names))}")
unwanted = sorted(n for n in names if re.fullmatch(r"(gcc|g\+\+|cpp)(-\d+)?|build-essential|python3(\.\d+)?-dev|python3-pip|make|binutils", n))
if unwanted:
    sys.exit(f"a default install pulls in {' '.join(unwanted)}")
if len(names) > max_packages or mb > max_mb:
    sys.exit(f"{len(names)} packages / {mb:.1f} MB: more than {max_packages} packages or {max_mb} MB")
PY
    ) || fail "footprint: $report"
    ok "default apt install: $report"
}

# ------------------------------------------------------------------------------------------
test_security() {
    step "systemd-analyze verify and security"
    man_option=()
    command -v man >/dev/null || man_option=(--man=no)   # no man-db in a minimal system
    verify_out=$(systemd-analyze verify "${man_option[@]}" /lib/systemd/system/$INDEX \
                     /lib/systemd/system/$FETCH /lib/systemd/system/$TIMER /lib/systemd/system/$PATH_UNIT 2>&1) \
        || fail "systemd-analyze verify: $verify_out"
    [ -z "$verify_out" ] || fail "systemd-analyze verify printed: $verify_out"
    ok "systemd-analyze verify: clean"
    check_exposure $INDEX "$INDEX_MAX_EXPOSURE"
    check_exposure $FETCH "$FETCH_MAX_EXPOSURE"
}

# ------------------------------------------------------------------------------------------
test_upstream() {
    step "stand-in upstream index on loopback, config pointing at it"
    mkdir -p "$WORK/upstream/simple/upthing" "$WORK/upstream/simple/localthing" "$WORK/upstream/files"
    up_wheel=$(make_wheel "$WORK/upstream/files" upthing 2.0)
    # the dependency-confusion case: upstream has a newer "localthing" than the store
    evil_wheel=$(make_wheel "$WORK/upstream/files" localthing 9.9)
    for wheel in "$up_wheel" "$evil_wheel"; do
        name=$(basename "$wheel"); project=${name%%-*}
        sha=$(sha256sum "$wheel" | cut -d' ' -f1)
        printf '<!DOCTYPE html><html><body><a href="../../files/%s#sha256=%s">%s</a></body></html>\n' \
            "$name" "$sha" "$name" > "$WORK/upstream/simple/$project/index.html"
    done
    upstream_port=$(free_port)
    python3 -m http.server "$upstream_port" --bind 127.0.0.1 --directory "$WORK/upstream" \
        >"$WORK/upstream.log" 2>&1 &
    upstream_pid=$!
    wait_for 10 "upstream stand-in on port $upstream_port" page_has "http://127.0.0.1:$upstream_port/simple/upthing/" upthing

    mkdir -p "$WORK/git"
    write_config redirect
    pypi-insiders check-config || fail "check-config refused the test config"
    systemctl restart $INDEX || fail "restart with the test config"
    wait_for 30 "$INDEX active on 127.0.0.1:$PORT" page_has "$(index_url /simple/)" "<html"
}

# ------------------------------------------------------------------------------------------
test_pip() {
    step "a local project and an upstream-only project, installed with pip through the index"
    install -d -o pypi-insiders -g pypi-insiders "$STORE/localthing"
    make_wheel "$STORE/localthing" localthing 1.0 >/dev/null
    wait_for 15 "localthing appears in the index" page_has "$(index_url /simple/localthing/)" "localthing-1.0-py3-none-any.whl"
    code=$(http_code "$(index_url /simple/upthing/)")
    case "$code" in 301|302|303|307|308) ok "upthing redirects to upstream ($code)" ;; *) fail "upthing: HTTP $code" ;; esac
    python3 -m venv "$WORK/venv"
    timeout 180 "$WORK/venv/bin/pip" install -q --index-url "$(index_url /simple/)" localthing upthing \
        || fail "pip install localthing upthing through the index"
    versions=$("$WORK/venv/bin/python" -c 'import localthing, upthing; print(localthing.VERSION, upthing.VERSION)')
    [ "$versions" = "1.0 2.0" ] || fail "installed versions: $versions (want local 1.0, upstream 2.0)"
    ok "pip installed localthing 1.0 from the store (not upstream's 9.9) and upthing 2.0 via upstream"
}

# ------------------------------------------------------------------------------------------
test_journal() {
    step "structured journal entries (a broken file in the store is skipped with a warning)"
    install -d -o pypi-insiders -g pypi-insiders "$STORE/broken"
    echo "not a zip archive" > "$STORE/broken/broken-1.0-py3-none-any.whl"
    structured() { journalctl -u $INDEX -o verbose --no-pager | grep -E '^\s+(PROJECT|FILE|CLIENT)=' ; }
    wait_for 15 "journal entry with FILE= naming the broken file" \
        bash -c "journalctl -u $INDEX -o verbose --no-pager | grep -E '^\\s+FILE=.*broken-1.0-py3-none-any.whl' >/dev/null"
    structured | sort | uniq -c | sort -rn | head -5 || true
    page_has "$(index_url /simple/localthing/)" "localthing-1.0-py3-none-any.whl" || fail "localthing no longer served"
    # The access log: that read is a journal entry of its own, found by its project.
    wait_for 15 "access log entry with PROJECT=localthing STATUS=200 CLIENT=127.0.0.1" \
        bash -c "journalctl -u $INDEX PROJECT=localthing STATUS=200 -o verbose --no-pager | grep -E '^\\s+CLIENT=127\\.0\\.0\\.1$' >/dev/null"
    rm -r "$STORE/broken"
}

# ------------------------------------------------------------------------------------------
test_upload() {
    step "an upload user added with pypi-insiders users add uploads a file the legacy way (twine's)"
    local out token wheel sha code
    [ "$(stat -c '%U:%G %a' /etc/pypi-insiders/users)" = "root:pypi-insiders 640" ] \
        || fail "/etc/pypi-insiders/users is $(stat -c '%U:%G %a' /etc/pypi-insiders/users)"
    out=$(pypi-insiders users add e2e-uploader --token --upload uploadthing </dev/null) || fail "pypi-insiders users add"
    token=${out%%$'\n'*}
    [ "$(stat -c '%U:%G %a' /etc/pypi-insiders/users)" = "root:pypi-insiders 640" ] \
        || fail "users add left /etc/pypi-insiders/users as $(stat -c '%U:%G %a' /etc/pypi-insiders/users)"
    write_config redirect $'\n[upload]\nenabled = true'
    systemctl reload $INDEX || fail "reload with uploads enabled"
    wheel=$(make_wheel "$WORK/upload" uploadthing 1.0)
    sha=$(sha256sum "$wheel" | cut -d' ' -f1)
    upload() {  # upload USER:SECRET -> HTTP status; the secret goes through curl's config on stdin
        printf 'user = "%s"\n' "$1" | curl -s -K - -o "$WORK/upload.out" -w '%{http_code}' --max-time 30 \
            -F ':action=file_upload' -F protocol_version=1 -F name=uploadthing -F version=1.0 \
            -F filetype=bdist_wheel -F pyversion=py3 -F metadata_version=2.1 -F "sha256_digest=$sha" \
            -F "content=@$wheel" "$(index_url /legacy/)"
    }
    code=$(upload "e2e-uploader:wrong")
    [ "$code" = 403 ] || fail "upload with a wrong token: HTTP $code $(cat "$WORK/upload.out")"
    code=$(upload "e2e-uploader:$token")
    [ "$code" = 200 ] || fail "upload: HTTP $code $(cat "$WORK/upload.out")"
    # answered only once the index lists it: no waiting between an upload and an install
    page_has "$(index_url /simple/uploadthing/)" "uploadthing-1.0-py3-none-any.whl" \
        || fail "the upload was answered before the index listed it"
    ok "the uploaded file is listed as soon as the upload is answered"
    if journalctl --no-pager | grep -- "$token" >/dev/null; then fail "the upload token is in the journal"; fi
    UPLOAD_TOKEN=$token
}

# ------------------------------------------------------------------------------------------
test_yank() {
    step "yank and un-yank without editing the config, the project page, remove a file for good"
    local page code wheel sha  # wheel and sha: what upload() (from test_upload) sends
    page=$(index_url /simple/uploadthing/)
    wheel="$WORK/upload/uploadthing-1.0-py3-none-any.whl"
    sha=$(sha256sum "$wheel" | cut -d' ' -f1)
    pypi-insiders yank uploadthing 1.0 --reason "e2e yank" || fail "pypi-insiders yank"
    [ "$(stat -c %U /var/lib/pypi-insiders/yanked.json)" = pypi-insiders ] \
        || fail "yank as root left yanked.json owned by $(stat -c %U /var/lib/pypi-insiders/yanked.json)"
    wait_for 15 "the running index shows the yank" page_has "$page" 'data-yanked="e2e yank"'
    page_has "$(index_url /project/uploadthing/)" "yanked: e2e yank" || fail "the project page shows no yank"
    page_has "$(index_url /)" 'href="project/uploadthing/"' || fail "/ does not link the project page"
    pypi-insiders yank uploadthing 1.0 --undo || fail "pypi-insiders yank --undo"
    wait_for 15 "the running index shows the un-yank" bash -c "! curl -sf --max-time 10 $page | grep data-yanked"
    api() {  # api PATH -> HTTP status; the token goes through curl's config on stdin, not argv
        printf 'user = "e2e-uploader:%s"\n' "$UPLOAD_TOKEN" \
            | curl -s -K - -o "$WORK/api.out" -w '%{http_code}' --max-time 30 \
                -d project=uploadthing -d version=1.0 -d reason=api "$(index_url "$1")"
    }
    code=$(api /-/yank)
    [ "$code" = 200 ] || fail "POST /-/yank: HTTP $code $(cat "$WORK/api.out")"
    page_has "$page" 'data-yanked="api"' || fail "POST /-/yank answered before the page showed it"
    code=$(api /-/unyank)
    [ "$code" = 200 ] || fail "POST /-/unyank: HTTP $code $(cat "$WORK/api.out")"
    ok "yanked and un-yanked through the API, with the upload token"
    pypi-insiders remove uploadthing-1.0-py3-none-any.whl || fail "pypi-insiders remove"
    wait_for 15 "the removed file leaves the index" \
        bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $page)\" = 404 ]"
    code=$(upload "e2e-uploader:$UPLOAD_TOKEN")
    [ "$code" = 400 ] || fail "re-upload of a removed filename: HTTP $code $(cat "$WORK/upload.out")"
    ok "a removed filename cannot be uploaded again"
}

# ------------------------------------------------------------------------------------------
test_nginx() {
    step "the sample nginx site passes requests to the service and sends the files it names"
    # nginx from the mirror, not started by its package (the container shares the host's port 80)
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q --no-install-recommends nginx-light \
        >"$WORK/nginx-install.log" 2>&1 || fail "apt-get install nginx-light: $(tail -3 "$WORK/nginx-install.log")"
    rm /usr/sbin/policy-rc.d
    # what the README tells admins: nginx reads the data through the service's group
    adduser --quiet www-data pypi-insiders
    local sample=/usr/share/doc/pypi-insiders/examples/pypi-insiders.conf nginx_port base json code
    [ -f "$sample" ] || fail "$sample is not installed"
    nginx_port=$(free_port)
    mkdir -p "$WORK/nginx"
    sed -e "s/^\( *\)listen 80;/\1listen 127.0.0.1:$nginx_port;/" -e '/listen \[::\]:80;/d' \
        -e "s/server 127.0.0.1:$SHIPPED_PORT;/server 127.0.0.1:$PORT;/" "$sample" > "$WORK/nginx/site.conf"
    printf '%s\n' "user www-data;" "pid $WORK/nginx/nginx.pid;" "error_log $WORK/nginx/error.log;" \
        "events {}" "http { include /etc/nginx/mime.types; access_log off; include $WORK/nginx/site.conf; }" \
        > "$WORK/nginx/nginx.conf"
    nginx -t -c "$WORK/nginx/nginx.conf" || fail "nginx -t on the sample site"
    nginx -c "$WORK/nginx/nginx.conf" || fail "nginx did not start"
    nginx_pid_file="$WORK/nginx/nginx.pid"
    base="http://127.0.0.1:$nginx_port"
    # As shipped, without trusted_proxy: loopback's anonymous "read" does not reach through nginx.
    anonymous_asked() { [ "$(http_code "$base/simple/localthing/")" = 401 ]; }
    wait_for 10 "nginx without trusted_proxy asks anonymous callers for credentials" anonymous_asked
    [ "$(http_code "$base/packages/localthing/localthing-1.0-py3-none-any.whl")" = 401 ] \
        || fail "nginx without trusted_proxy: an anonymous caller got the wheel"
    warned() { journalctl -u $INDEX --no-pager -o cat | grep 'trusted_proxy is not set' >/dev/null; }
    wait_for 10 "the index warns that proxy headers arrive without trusted_proxy" warned
    # What the README says: trusted_proxy, and anonymous = "read" to open reads behind nginx.
    cp "$CONFIG" "$WORK/nginx/config.before"
    sed -i "s/^listen = \"127.0.0.1:$PORT\"\$/&\ntrusted_proxy = \"127.0.0.1\"/" "$CONFIG"
    printf '\n[access]\nanonymous = "read"\n' >> "$CONFIG"
    grep '^trusted_proxy = "127.0.0.1"$' "$CONFIG" >/dev/null || fail "trusted_proxy not set in $CONFIG"
    systemctl restart $INDEX || fail "restart with trusted_proxy"
    wait_for 30 "$INDEX active with trusted_proxy" page_has "$(index_url /simple/)" "<html"
    wait_for 10 "nginx serves the root list" page_has "$base/simple/" "localthing"
    json=$(curl -sf --max-time 10 -H 'Accept: application/vnd.pypi.simple.v1+json' -D "$WORK/nginx/headers" \
        "$base/simple/localthing/") || fail "nginx: JSON page of localthing"
    grep -i '^content-type: application/vnd.pypi.simple.v1+json' "$WORK/nginx/headers" >/dev/null \
        || fail "nginx: JSON page content type: $(grep -i content-type "$WORK/nginx/headers")"
    echo "$json" | grep '"localthing-1.0-py3-none-any.whl"' >/dev/null || fail "nginx: JSON page: $json"
    [ "$(http_code "$base/packages/localthing/localthing-1.0-py3-none-any.whl")" = 200 ] || fail "nginx: wheel"
    curl -sf -o /dev/null -D "$WORK/nginx/file-headers" "$base/packages/localthing/localthing-1.0-py3-none-any.whl"
    grep -i '^vary: Authorization' "$WORK/nginx/file-headers" >/dev/null \
        || fail "nginx: a file it sends lost Vary: Authorization: $(cat "$WORK/nginx/file-headers")"
    [ "$(http_code "$base/packages/localthing/localthing-1.0-py3-none-any.whl.metadata")" = 200 ] \
        || fail "nginx: PEP 658 metadata"
    code=$(http_code "$base/simple/upthing/")
    case "$code" in 301|302|303|307|308) ok "nginx passes a name not held here to the service ($code)" ;;
        *) fail "nginx: upthing answered $code" ;; esac
    [ "$(http_code "$base/simple/LocalThing/")" = 301 ] || fail "nginx: an unnormalized name is not redirected"
    timeout 180 "$WORK/venv/bin/pip" install -q --force-reinstall --index-url "$base/simple/" localthing upthing \
        || fail "pip install through nginx"
    ok "nginx serves pages (HTML and JSON), files and metadata; pip installs through it"
    kill "$(cat "$nginx_pid_file")"
    nginx_pid_file=""
    # trusted_proxy needs a restart to go again; the sections below expect the index without it
    cp "$WORK/nginx/config.before" "$CONFIG"
    systemctl restart $INDEX || fail "restart without trusted_proxy"
    wait_for 30 "$INDEX active without trusted_proxy" page_has "$(index_url /simple/)" "<html"
}

# ------------------------------------------------------------------------------------------
test_mirror() {
    step "fallback = \"mirror\" in the shipped unit: fetched once, verified, kept, served by nginx, survives upstream"
    local wheel sha name kept dead base before code
    name=upthing-2.0-py3-none-any.whl
    wheel="$WORK/upstream/files/$name"
    sha=$(sha256sum "$wheel" | cut -d' ' -f1)
    kept="/var/cache/pypi-insiders/mirror/files/${sha:0:2}/$sha/$name"
    before="$WORK/config.before-mirror"
    # five restarts in a few seconds: systemd's start limit (5 in 10 s) is reset before each one
    restart_index() { systemctl reset-failed $INDEX; systemctl restart $INDEX; }
    cp "$CONFIG" "$before"
    sed -i 's/^fallback = ".*"$/fallback = "mirror"/' "$CONFIG"
    grep '^fallback = "mirror"$' "$CONFIG" >/dev/null || fail "fallback = mirror not set in $CONFIG"
    pypi-insiders check-config || fail "check-config refused fallback = mirror"
    restart_index || fail "restart with fallback = mirror"
    wait_for 30 "$INDEX active with the mirror" page_has "$(index_url /simple/)" "<html"
    wait_for 10 "upthing's page is rendered here, linking to this index" \
        page_has "$(index_url /simple/upthing/)" "href=\"../../mirror/upthing/$sha/$name#sha256=$sha\""
    [ "$(http_code "$(index_url /simple/localthing/)")" = 200 ] || fail "mirror: localthing's page"
    if curl -sf --max-time 10 "$(index_url /simple/localthing/)" | grep 'localthing-9.9' >/dev/null; then
        fail "mirror: upstream's localthing 9.9 reached the local name's page"
    fi
    # a client that reaches nothing but the index: every proxy is a dead port, the index exempt
    dead=$(free_port)
    mirror_pip() {
        HTTP_PROXY="http://127.0.0.1:$dead" HTTPS_PROXY="http://127.0.0.1:$dead" NO_PROXY=127.0.0.1 \
            timeout 180 "$WORK/venv/bin/pip" install -q --force-reinstall --index-url "$(index_url /simple/)" "$@"
    }
    mirror_pip upthing localthing || fail "pip install through the mirror, the index its only reachable host"
    [ "$("$WORK/venv/bin/python" -c 'import localthing; print(localthing.VERSION)')" = 1.0 ] \
        || fail "mirror: localthing did not come from the store"
    [ -f "$kept" ] || fail "mirror: $kept was not stored (the unit's sandbox must let it write its cache)"
    cmp -s "$kept" "$wheel" || fail "mirror: the stored bytes differ from upstream's"
    [ "$(stat -c '%U:%G %a' "$kept")" = "pypi-insiders:pypi-insiders 640" ] \
        || fail "mirror: $kept is $(stat -c '%U:%G %a' "$kept"), want pypi-insiders:pypi-insiders 640"
    stored() { journalctl -u $INDEX --no-pager -o cat RESULT=stored SHA256="$sha" | grep "$name" >/dev/null; }
    wait_for 10 "the journal has the stored file, with RESULT and SHA256 fields" stored
    wait_for 20 "/status.json counts the mirror's miss" page_has "$(index_url /status.json)" '"misses": [1-9]'
    wait_for 20 "/status shows the mirror's section" page_has "$(index_url /status)" '<th>misses</th><td>[1-9]'
    pypi-insiders status | grep '^mirror: .* in [1-9][0-9]* files\?; free disk' >/dev/null \
        || fail "pypi-insiders status shows no mirror line: $(pypi-insiders status 2>&1)"
    ok "pip installed upthing through the mirror; its verified bytes are kept 0640 in the cache"

    kill "$upstream_pid"
    wait "$upstream_pid" 2>/dev/null || true
    upstream_pid=""
    restart_index || fail "restart with upstream stopped"
    wait_for 30 "$INDEX active with upstream stopped" page_has "$(index_url /simple/)" "<html"
    mirror_pip upthing || fail "pip install from the mirror after a restart with upstream stopped"
    ok "with upstream stopped, after a restart, upthing installs from the mirror's disk"
    python3 -m http.server "$upstream_port" --bind 127.0.0.1 --directory "$WORK/upstream" \
        >>"$WORK/upstream.log" 2>&1 &
    upstream_pid=$!
    wait_for 10 "upstream stand-in back on port $upstream_port" page_has "http://127.0.0.1:$upstream_port/simple/upthing/" upthing

    # behind the sample nginx site (test_nginx set it up): the service names the file, nginx sends it
    sed -i "s/^listen = \"127.0.0.1:$PORT\"\$/&\ntrusted_proxy = \"127.0.0.1\"/" "$CONFIG"
    printf '\n[access]\nanonymous = "read"\n' >> "$CONFIG"
    restart_index || fail "restart with trusted_proxy and the mirror"
    wait_for 30 "$INDEX active with trusted_proxy and the mirror" page_has "$(index_url /simple/)" "<html"
    curl -sf --max-time 10 -o "$WORK/accel-body" -D "$WORK/accel-headers" -H 'X-Sendfile-Type: X-Accel-Redirect' \
        "$(index_url "/mirror/upthing/$sha/$name")" || fail "mirror: a hit asked for by nginx"
    grep -i "^x-accel-redirect: /-/mirror/${sha:0:2}/$sha/$name" "$WORK/accel-headers" >/dev/null \
        || fail "mirror: no X-Accel-Redirect to /-/mirror/: $(cat "$WORK/accel-headers")"
    [ ! -s "$WORK/accel-body" ] || fail "mirror: the service sent the bytes itself beside X-Accel-Redirect"
    nginx -c "$WORK/nginx/nginx.conf" || fail "nginx did not start again"
    nginx_pid_file="$WORK/nginx/nginx.pid"
    base="http://127.0.0.1:$(sed -n 's/^ *listen 127.0.0.1:\([0-9]*\);/\1/p' "$WORK/nginx/site.conf" | head -1)"
    wait_for 10 "nginx serves the mirrored page" page_has "$base/simple/upthing/" "$name"
    code=$(curl -s --max-time 10 -o "$WORK/nginx-mirrored" -w '%{http_code}' "$base/mirror/upthing/$sha/$name")
    [ "$code" = 200 ] || fail "nginx: the mirrored file answered $code ($(tail -3 "$WORK/nginx/error.log"))"
    cmp -s "$WORK/nginx-mirrored" "$wheel" || fail "nginx: the mirrored file's bytes differ"
    code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$base/-/mirror/${sha:0:2}/$sha/$name")
    [ "$code" = 404 ] || fail "nginx: its internal /-/mirror/ location answered a client directly ($code)"
    ok "nginx sends a mirrored file from the cache on the service's X-Accel-Redirect; /-/mirror/ stays internal"
    kill "$(cat "$nginx_pid_file")"
    nginx_pid_file=""
    cp "$before" "$CONFIG"
    restart_index || fail "restart without the mirror"
    wait_for 30 "$INDEX active without the mirror" page_has "$(index_url /simple/)" "<html"
}

# ------------------------------------------------------------------------------------------
test_reload() {
    step "an edited config takes effect on reload"
    main_pid=$(systemctl show -p MainPID --value $INDEX)
    write_config off
    systemctl reload $INDEX || fail "systemctl reload"
    wait_for 15 "upthing is 404 after fallback = off and a reload" \
        bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $(index_url /simple/upthing/))\" = 404 ]"
    [ "$(systemctl show -p MainPID --value $INDEX)" = "$main_pid" ] || fail "reload restarted the process"
    ok "reloaded in place (same PID $main_pid)"

    # A new listen address needs a restart: the reload must fail and say so, the index stay.
    sed -i "s/^listen = .*/listen = \"127.0.0.1:$((PORT + 1))\"/" "$CONFIG"
    grep -q "^listen = \"127.0.0.1:$((PORT + 1))\"" "$CONFIG" || fail "the test could not edit listen"
    if systemctl reload $INDEX 2>/dev/null; then fail "reload after a new listen exited 0"; fi
    journalctl -u $INDEX --no-pager | grep "server.listen: 127.0.0.1:$PORT -> 127.0.0.1:$((PORT + 1)) needs a restart" \
        >/dev/null || fail "the refused reload does not say that listen needs a restart"
    [ "$(systemctl show -p MainPID --value $INDEX)" = "$main_pid" ] || fail "a refused reload restarted the index"
    write_config off
    systemctl reload $INDEX || fail "reload after listen was put back"
    ok "a reload that cannot apply listen fails and says a restart is needed"
}

# ------------------------------------------------------------------------------------------
test_fetch() {
    step "a watched git repository: a tag built by the fetch service, another by the timer"
    # Builds run sandboxed, their requirements installed beforehand; this container must not
    # depend on the registry, so pip takes setuptools and wheel from Debian's python3-*-whl
    # packages, configured as an admin would: [fetch.build_env], for the service and `update`.
    ls /usr/share/python-wheels/setuptools-*.whl /usr/share/python-wheels/wheel-*.whl \
        || fail "python3-setuptools-whl / python3-wheel-whl (Recommends) are not installed"
    # A credential only root can read on disk: the run gets it through LoadCredential= alone.
    # (A local repository needs none; fetching proves it was found and read.)
    printf 'e2e-secret-token\n' > /etc/pypi-insiders/credentials/e2e-token
    chmod 0600 /etc/pypi-insiders/credentials/e2e-token
    write_config off 'credential = "e2e-token"
[fetch.build_env]
PIP_NO_INDEX = "1"
PIP_FIND_LINKS = "/usr/share/python-wheels"'
    git_commit 1.0.0
    timeout 300 systemctl start $FETCH || fail "systemctl start $FETCH"
    [ "$(systemctl show -p Result --value $FETCH)" = success ] || fail "$FETCH result"
    wait_for 15 "gitthing 1.0.0 built and served" page_has "$(index_url /simple/gitthing/)" "gitthing-1.0.0-py3-none-any.whl"
    page_has "$(index_url /simple/gitthing/)" "gitthing-1.0.0.tar.gz" || fail "no sdist of gitthing 1.0.0"
    timeout 180 "$WORK/venv/bin/pip" install -q --index-url "$(index_url /simple/)" gitthing==1.0.0 \
        || fail "pip install gitthing==1.0.0"
    journalctl -u $FETCH -o verbose --no-pager | grep -E '^\s+REPO=gitthing' >/dev/null \
        || fail "no REPO= field in the fetch service's journal"
    touch "$WORK/before-root-status"
    pypi-insiders status || fail "pypi-insiders status"
    owned_by_root=$(find /var/lib/pypi-insiders /var/cache/pypi-insiders -user root \
        -newer "$WORK/before-root-status" | head -5)
    [ -z "$owned_by_root" ] || fail "root-owned files left by status: $owned_by_root"
    if journalctl --no-pager | grep e2e-secret-token; then fail "the credential is in the journal"; fi
    ok "credential read through LoadCredential= (root-only file on disk), never logged"

    git_commit 1.1.0
    mkdir -p /etc/systemd/system/$TIMER.d
    printf '[Timer]\nOnCalendar=\nOnActiveSec=2s\nRandomizedDelaySec=0\nAccuracySec=1s\n' \
        > /etc/systemd/system/$TIMER.d/soon.conf
    systemctl daemon-reload
    systemctl restart $TIMER
    wait_for 180 "the timer fired and gitthing 1.1.0 is served" \
        page_has "$(index_url /simple/gitthing/)" "gitthing-1.1.0-py3-none-any.whl"
    rm -r /etc/systemd/system/$TIMER.d
    systemctl daemon-reload
    runs=$(journalctl -u $FETCH --no-pager | grep -c 'Finished pypi-insiders-fetch.service' || true)
    [ "$runs" -ge 2 ] || fail "expected 2 fetch runs in the journal, found $runs"
    ok "$runs fetch runs (one by hand, one by the timer)"

    # A watched repository turned hostile: its in-tree backend tries, inside the shipped unit,
    # what tests/fetch/test_sandbox.py tries, and publishes what it got in its wheel.
    evil_repo
    write_config off 'credential = "e2e-token"
[repos.evil]
url = "'"$WORK/git/evil"'"
[fetch.build_env]
PIP_NO_INDEX = "1"
PIP_FIND_LINKS = "/usr/share/python-wheels"'
    timeout 300 systemctl start $FETCH || fail "systemctl start $FETCH (hostile build)"
    evil_wheel=/var/lib/pypi-insiders/store/evil-proj/evil_proj-1.0-py3-none-any.whl
    [ -f "$evil_wheel" ] || fail "the hostile build was not published (it must build, and get nothing)"
    python3 - "$evil_wheel" <<'PY' || fail "the hostile build got something"
import json, sys, zipfile
loot = json.loads(zipfile.ZipFile(sys.argv[1]).read("loot.json"))
print(json.dumps(loot, indent=1))
got = {k: v for k, v in loot.items() if not str(v).startswith("failed")}
sys.exit(f"got: {sorted(got)}" if got else 0)
PY
    if grep -rl e2e-secret-token /var/lib/pypi-insiders/store; then fail "a secret reached the store"; fi
    if pgrep -f evil-daemon-e2e; then fail "a process of the hostile build outlived it"; fi
    [ ! -e /var/lib/pypi-insiders/store/gitthing/gitthing-66.6-py3-none-any.whl ] || fail "it planted a file"
    ok "hostile build in the shipped unit: no credential, users file, mirror, store, network; nothing left"

    # An administrator's habit: `pypi-insiders update` as root. It must run as the service
    # user (nothing root-owned left behind) and still read the root-only credential.
    git_commit 1.2.0
    touch "$WORK/before-root-update"
    timeout 300 pypi-insiders update || fail "pypi-insiders update as root (same build settings)"
    wait_for 15 "gitthing 1.2.0 built by root's update and served" \
        page_has "$(index_url /simple/gitthing/)" "gitthing-1.2.0-py3-none-any.whl"
    owned_by_root=$(find /var/lib/pypi-insiders /var/cache/pypi-insiders -user root \
        -newer "$WORK/before-root-update" | head -5)
    [ -z "$owned_by_root" ] || fail "root-owned files left by update: $owned_by_root"
    ok "update run as root became the service user, credential handed over, nothing root-owned"

    # A member of the service's group reads the system's status and config without root; the
    # index's /status, computed by its parent, shows the timer's next run (asked of systemd).
    useradd --create-home --groups pypi-insiders e2e-member || fail "useradd e2e-member"
    member_status=$(runuser -u e2e-member -- pypi-insiders status) || fail "pypi-insiders status as a group member"
    echo "$member_status" | grep '^gitthing: checked 2' >/dev/null \
        || fail "a group member does not see the system's status: $member_status"
    runuser -u e2e-member -- pypi-insiders check-config | grep '^/etc/pypi-insiders/config.toml: OK' >/dev/null \
        || fail "check-config as a group member"
    userdel --remove e2e-member 2>/dev/null || fail "userdel e2e-member"
    systemctl restart $TIMER  # armed again from its OnCalendar= (the drop-in above is gone)
    next_run=$(systemctl show $TIMER -p NextElapseUSecRealtime --value)
    [ -n "$next_run" ] && [ "$next_run" != n/a ] || fail "$TIMER has no next run"
    wait_for 30 "/status.json shows the timer's next run" \
        page_has "$(index_url /status.json)" "\"next_run\": \"$next_run\""
    ok "a member of the group reads the system's status; /status shows the timer's next run"
}

# ------------------------------------------------------------------------------------------
# deliver EVENT PAYLOAD [DELIVERY ID]: a GitHub-signed delivery for gitthing; prints "STATUS MS".
# The secret is read from its file here, never passed on a command line.
deliver() {
    python3 - "$(index_url /-/hooks/gitthing)" "$@" <<'PY'
import hashlib, hmac, sys, time, urllib.request, uuid
url, event, payload = sys.argv[1], sys.argv[2], sys.argv[3].encode()
delivery = sys.argv[4] if len(sys.argv) > 4 else str(uuid.uuid4())
secret = open("/etc/pypi-insiders/webhook-secrets/hook-gitthing", "rb").read().splitlines()[0].strip()
headers = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
           "X-Hub-Signature-256": "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()}
began = time.monotonic()
try:
    with urllib.request.urlopen(urllib.request.Request(url, payload, headers), timeout=10) as answer:
        status = answer.status
except urllib.error.HTTPError as error:
    status = error.code
print(status, round((time.monotonic() - began) * 1000, 1))
PY
}
# push_to_install VERSION: a signed tag-push delivery for vVERSION, then wait for the wheel on the
# index page and pip install gitthing==VERSION; prints the timings (systemd's monotonic clock).
push_to_install() {
    python3 - "$(index_url /-/hooks/gitthing)" "$(index_url /simple/)" "$WORK/venv/bin/pip" "$1" <<'PY'
import hashlib, hmac, json, subprocess, sys, time, urllib.error, urllib.request, uuid
hook, simple, pip, version = sys.argv[1:5]
page = f"{simple}gitthing/"
secret = open("/etc/pypi-insiders/webhook-secrets/hook-gitthing", "rb").read().splitlines()[0].strip()
payload = json.dumps({"ref": f"refs/tags/v{version}", "created": True, "deleted": False,
                      "before": "0" * 40, "after": "1" * 40}).encode()
headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
           "X-Hub-Signature-256": "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()}
def started() -> int:
    out = subprocess.run(["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value",
                          "pypi-insiders-fetch.service"], capture_output=True, text=True).stdout.strip()
    return int(out) if out.isdigit() else 0
before = started()
t0 = time.monotonic()
with urllib.request.urlopen(urllib.request.Request(hook, payload, headers), timeout=10) as answer:
    status = answer.status
t_hook = time.monotonic()
t_pub = None
wheel = f"gitthing-{version}-py3-none-any.whl".encode()
while time.monotonic() - t0 < 120:
    try:
        with urllib.request.urlopen(page, timeout=10) as answer:
            if wheel in answer.read():
                t_pub = time.monotonic()
                break
    except urllib.error.HTTPError:  # 404 until the project's first file is published
        pass
    time.sleep(0.02)
if t_pub is None:
    sys.exit(f"gitthing {version} was not published within 120 s")
start = started() / 1e6
done = subprocess.run([pip, "install", "-q", "--no-cache-dir", "--index-url", simple, f"gitthing=={version}"],
                      capture_output=True, text=True, timeout=120)
t_pip = time.monotonic()
if done.returncode:
    sys.exit(f"pip install gitthing=={version}: {done.stderr[-500:]}")
queue_to_start = f"{start - t_hook:.2f}" if started() != before else "?"
print(f"status={status} hook_ms={(t_hook - t0) * 1000:.1f} queue_to_start_s={queue_to_start} "
      f"start_to_published_s={t_pub - start:.2f} pip_s={t_pip - t_pub:.2f} total_s={t_pip - t0:.2f}")
PY
}
fetch_runs() { journalctl -u $FETCH --no-pager -o cat | grep -c '^Starting pypi-insiders-fetch.service' || true; }
fetch_idle() { [ "$(systemctl is-active $FETCH || true)" = inactive ] && [ -z "$(ls -A /var/lib/pypi-insiders/fetch-queue)" ]; }

test_webhook() {
    step "a signed tag-push delivery: the path unit builds the tag; a burst coalesces; the timer still works"
    local out secret answer runs_before runs total creds
    mkdir -p /etc/systemd/system/$FETCH.d
    printf '[Service]\nEnvironment=PIP_NO_INDEX=1 PIP_FIND_LINKS=/usr/share/python-wheels\n' \
        > /etc/systemd/system/$FETCH.d/offline.conf
    systemctl daemon-reload
    write_config off $'webhook_secret = "hook-gitthing"\n\n[webhooks]\nenabled = true'
    out=$(pypi-insiders repos hook gitthing) || fail "pypi-insiders repos hook gitthing"
    echo "$out" | grep "^URL:    http://127.0.0.1:$PORT/-/hooks/gitthing$" >/dev/null || fail "repos hook URL: $out"
    secret=$(echo "$out" | sed -n 's/^secret: \([0-9a-f]\{64\}\)$/\1/p')
    [ -n "$secret" ] || fail "repos hook printed no new secret: $out"
    [ "$(stat -c '%U %a' /etc/pypi-insiders/webhook-secrets/hook-gitthing)" = "root 600" ] \
        || fail "the secret file is $(stat -c '%U %a' /etc/pypi-insiders/webhook-secrets/hook-gitthing)"
    pypi-insiders repos hook gitthing | grep -- "$secret" >/dev/null && fail "repos hook printed the secret twice"
    pypi-insiders check-config >/dev/null || fail "check-config with webhooks on"
    systemctl restart $INDEX || fail "restart the index to load the new secret"
    wait_for 30 "$INDEX back" page_has "$(index_url /simple/)" "<html"
    creds=$(ls "/run/credentials/$INDEX")
    [ "$creds" = hook_hook-gitthing ] || fail "the index's credentials are: $creds (want only the hook secret)"
    ok "the index holds the webhook secret and no git credential"

    answer=$(deliver ping '{"zen": "e2e", "hook_id": 1}')
    [ "${answer%% *}" = 200 ] || fail "ping: $answer"
    answer=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'X-GitHub-Event: push' \
        -H 'X-Hub-Signature-256: sha256=0000000000000000000000000000000000000000000000000000000000000000' \
        -d '{"ref": "refs/tags/v9"}' "$(index_url /-/hooks/gitthing)")
    [ "$answer" = 401 ] || fail "a wrong signature: HTTP $answer"
    [ "$(http_code -d '{}' "$(index_url /-/hooks/nothing-here)")" = 404 ] || fail "an unknown key is not 404"
    ok "ping 200, wrong signature 401, unknown key 404"

    # --- push to install: a first tag (its build environment made), then a second one (reused).
    # Bookworm's setuptools 66 asks for wheel too: this project lists both, so the second tag's
    # build reuses the environment the first one made (the 5 s target is for that case).
    export GITTHING_REQUIRES='["setuptools>=66", "wheel"]'
    for version in 2.0.0 2.1.0; do
        wait_for 60 "no fetch run in progress" fetch_idle
        git_commit $version
        push_to_install $version > "$WORK/webhook-timing" || fail "push to install: $(cat "$WORK/webhook-timing")"
        echo "gitthing $version: $(cat "$WORK/webhook-timing")"
        grep '^status=202 ' "$WORK/webhook-timing" >/dev/null || fail "the tag push was not queued"
    done
    unset GITTHING_REQUIRES
    total=$(sed -n 's/.*total_s=\([0-9.]*\).*/\1/p' "$WORK/webhook-timing")
    awk -v t="$total" 'BEGIN { exit !(t < 5.0) }' || echo "NOTE: push to install took $total s, over the 5 s target"
    awk -v t="$total" 'BEGIN { exit !(t < 60.0) }' || fail "push to install took $total s"
    journalctl -u $INDEX -o verbose --no-pager OUTCOME=queued | grep -E '^\s+DELIVERY=' >/dev/null \
        || fail "no journal entry with OUTCOME=queued and DELIVERY="
    journalctl -u $FETCH --no-pager | grep "started by $PATH_UNIT: 1 queued repository" >/dev/null \
        || fail "the run was not started by $PATH_UNIT"
    ok "tag pushed, delivery sent, pip installed gitthing==2.1.0 in $total s (build environment reused)"
    out=$(pypi-insiders status) || fail "pypi-insiders status"
    echo "$out" | grep -E '^  last webhook: .* github push: queued$' >/dev/null || fail "status: no last webhook: $out"
    echo "$out" | grep -E "$PATH_UNIT: active \((waiting|running)\)" >/dev/null || fail "status: no path unit state: $out"
    ok "pypi-insiders status shows the last delivery, the queue and $PATH_UNIT"

    # --- 50 deliveries in one second: at most two runs, the path unit still active
    wait_for 60 "no fetch run in progress" fetch_idle
    runs_before=$(fetch_runs)
    python3 - "$(index_url /-/hooks/gitthing)" <<'PY' > "$WORK/burst" || fail "burst: $(cat "$WORK/burst")"
import hashlib, hmac, json, threading, time, urllib.request, uuid
url = __import__("sys").argv[1]
secret = open("/etc/pypi-insiders/webhook-secrets/hook-gitthing", "rb").read().splitlines()[0].strip()
results = []
def send(n):
    payload = json.dumps({"ref": f"refs/tags/v2.0.{n}", "created": True, "after": "2" * 40}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()}
    began = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, payload, headers), timeout=10) as answer:
        results.append((answer.status, answer.read().strip().decode(), (time.monotonic() - began) * 1000))
t0 = time.monotonic()
threads = []
for n in range(50):
    threads.append(threading.Thread(target=send, args=(n,)))
    threads[-1].start()
    time.sleep(max(0.0, t0 + (n + 1) * 0.02 - time.monotonic()))
for thread in threads:
    thread.join()
ms = sorted(r[2] for r in results)
outcomes = {o: sum(1 for r in results if r[1] == o) for o in sorted({r[1] for r in results})}
print(f"sent={len(results)} in {time.monotonic() - t0:.2f}s statuses={sorted({r[0] for r in results})} "
      f"outcomes={outcomes} median_ms={ms[len(ms) // 2]:.1f} max_ms={ms[-1]:.1f}")
PY
    cat "$WORK/burst"
    grep '^sent=50 .*statuses=\[202\]' "$WORK/burst" >/dev/null || fail "burst answers: $(cat "$WORK/burst")"
    wait_for 60 "the burst's runs are over" fetch_idle
    sleep 2  # a run the path unit would start last comes within this
    wait_for 60 "the burst's runs are over" fetch_idle
    runs=$(( $(fetch_runs) - runs_before ))
    unit_active $PATH_UNIT || fail "$PATH_UNIT is $(systemctl is-active $PATH_UNIT || true) after the burst"
    [ "$runs" -ge 1 ] && [ "$runs" -le 2 ] || fail "50 deliveries gave $runs fetch runs (want 1 or 2)"
    ok "50 deliveries in about a second: $runs fetch run(s); $PATH_UNIT active"

    # --- replay: the same delivery id again is a duplicate
    answer=$(deliver push '{"ref": "refs/tags/v2.0.0", "created": true, "after": "3333333333333333333333333333333333333333"}' replay-e2e-1)
    answer=$(deliver push '{"ref": "refs/tags/v2.0.0", "created": true, "after": "3333333333333333333333333333333333333333"}' replay-e2e-1)
    [ "${answer%% *}" = 200 ] || fail "a replay answered $answer"

    # --- without the path unit, the timer still builds the tag
    wait_for 60 "no fetch run in progress" fetch_idle
    systemctl stop $PATH_UNIT
    git_commit 2.2.0
    answer=$(deliver push '{"ref": "refs/tags/v2.2.0", "created": true, "after": "4444444444444444444444444444444444444444"}')
    [ "${answer%% *}" = 202 ] || fail "delivery with the path unit stopped: $answer"
    sleep 2
    [ -n "$(ls -A /var/lib/pypi-insiders/fetch-queue)" ] || fail "the entry was taken with the path unit stopped"
    mkdir -p /etc/systemd/system/$TIMER.d
    printf '[Timer]\nOnCalendar=\nOnActiveSec=2s\nRandomizedDelaySec=0\nAccuracySec=1s\n' \
        > /etc/systemd/system/$TIMER.d/soon.conf
    systemctl daemon-reload
    systemctl restart $TIMER
    wait_for 180 "the timer fired and gitthing 2.2.0 is served" \
        page_has "$(index_url /simple/gitthing/)" "gitthing-2.2.0-py3-none-any.whl"
    wait_for 60 "the timer's run claimed the queue" fetch_idle
    rm -r /etc/systemd/system/$TIMER.d /etc/systemd/system/$FETCH.d
    systemctl daemon-reload
    systemctl restart $TIMER
    systemctl start $PATH_UNIT
    if journalctl --no-pager | grep -- "$secret" >/dev/null; then fail "the webhook secret is in the journal"; fi
    ok "with $PATH_UNIT stopped, the timer built the tag; the secret is nowhere in the journal"
}

# ------------------------------------------------------------------------------------------
test_cli() {
    step "pypi-insiders server|watcher drive the units"
    pypi-insiders server status >/dev/null || fail "pypi-insiders server status"
    watcher_status=$(pypi-insiders watcher status || true)   # 3: the fetch service is inactive
    echo "$watcher_status" | grep "$TIMER" >/dev/null || fail "pypi-insiders watcher status: no $TIMER"
    pypi-insiders server logs -n 3 || fail "pypi-insiders server logs"
    pypi-insiders watcher logs -n 3 || fail "pypi-insiders watcher logs"
    ok "server status/logs, watcher logs"
}

# ------------------------------------------------------------------------------------------
test_user_units() {
    step "a user without root (a pip install's workflow): server and watcher as systemd user units"
    useradd --create-home --shell /bin/bash sponsor
    local uid uport
    uid=$(id -u sponsor)
    uport=$((PORT + 2))
    loginctl enable-linger sponsor
    wait_for 30 "sponsor's user manager runs" test -S "/run/user/$uid/systemd/private"
    as_sponsor() {
        runuser -u sponsor -- env -i PATH=/usr/bin:/bin HOME=/home/sponsor XDG_RUNTIME_DIR="/run/user/$uid" \
            PIP_NO_INDEX=1 PIP_FIND_LINKS=/usr/share/python-wheels "$@"
    }
    as_sponsor mkdir -p /home/sponsor/.config/pypi-insiders
    printf '[server]\nlisten = "127.0.0.1:%s"\n[upstream]\nfallback = "off"\n[fetch]\ninterval = "2 seconds"\n' \
        "$uport" | as_sponsor tee /home/sponsor/.config/pypi-insiders/config.toml >/dev/null
    as_sponsor pypi-insiders repos add "$WORK/git/gitthing" gitthing --min-version 1.2.0 \
        || fail "repos add as sponsor"
    as_sponsor pypi-insiders server start || fail "server start as sponsor"
    as_sponsor systemctl --user is-active --quiet pypi-insiders-index.service \
        || fail "server start did not make the user unit pypi-insiders-index.service"
    page_has "http://127.0.0.1:$uport/simple/" "<html" || fail "the user's index does not answer once started"
    as_sponsor pypi-insiders watcher start || fail "watcher start as sponsor"
    wait_for 240 "the user's watcher built gitthing 1.2.0 by itself" \
        page_has "http://127.0.0.1:$uport/simple/gitthing/" "gitthing-1.2.0-py3-none-any.whl"
    git_commit 1.3.0
    wait_for 240 "a new tag, 1.3.0, arrived without an update" \
        page_has "http://127.0.0.1:$uport/simple/gitthing/" "gitthing-1.3.0-py3-none-any.whl"
    as_sponsor pypi-insiders watcher status >/dev/null || fail "watcher status as sponsor"
    journalctl _SYSTEMD_USER_UNIT=pypi-insiders-watcher.service --no-pager | grep "fetch run (interval)" \
        >/dev/null || fail "no fetch run of the user's watcher in the journal"
    as_sponsor pypi-insiders watcher stop || fail "watcher stop as sponsor"
    as_sponsor pypi-insiders server stop || fail "server stop as sponsor"
    if as_sponsor systemctl --user is-active --quiet pypi-insiders-index.service; then fail "server stop left it running"; fi
    if curl -s --max-time 3 "http://127.0.0.1:$uport/simple/" >/dev/null; then fail "the user's index still answers"; fi
    [ -z "$(find /home/sponsor -user root | head -1)" ] || fail "root-owned files in the user's home"
    loginctl disable-linger sponsor
    ok "server and watcher started, served, fetched a new tag, and stopped as user units"
}

# ------------------------------------------------------------------------------------------
test_broken() {
    step "a broken config makes the restart fail, with the one-line error in systemctl status"
    cp "$CONFIG" "$WORK/config.good"
    printf '[server]\nlisten = "127.0.0.1:%s"\nthreads = "many"\n' "$PORT" > "$CONFIG"
    main_pid=$(systemctl show -p MainPID --value $INDEX)
    if systemctl reload $INDEX 2>/dev/null; then fail "reload with a broken config succeeded"; fi
    unit_active $INDEX || fail "a refused reload stopped the index"
    [ "$(systemctl show -p MainPID --value $INDEX)" = "$main_pid" ] || fail "a refused reload restarted the index"
    page_has "$(index_url /simple/)" "<html" || fail "the index stopped answering after a refused reload"
    ok "reload refused, the index goes on with the config it has"
    if systemctl restart $INDEX 2>/dev/null; then fail "restart with a broken config succeeded"; fi
    [ "$(systemctl is-active $INDEX || true)" = failed ] || fail "$INDEX is $(systemctl is-active $INDEX || true), not failed"
    # journald files the line a moment after systemctl returns
    status_shows_error() {
        { systemctl status --no-pager -n 20 $INDEX || true; } | grep "pypi-insiders: $CONFIG: server.threads" >/dev/null
    }
    wait_for 10 "systemctl status shows the one-line config error" status_shows_error
    systemctl status --no-pager -n 20 $INDEX || true
    if journalctl -u $INDEX --no-pager | grep Traceback; then fail "a traceback in the journal"; fi
    cp "$WORK/config.good" "$CONFIG"
    systemctl reset-failed $INDEX || true
    systemctl restart $INDEX || fail "restart with the config repaired"
    wait_for 30 "$INDEX active again" page_has "$(index_url /simple/)" "<html"
}

# ------------------------------------------------------------------------------------------
test_port_in_use() {
    step "a port in use is retried until it is free, and the package's start says why it waits"
    local deb holder
    deb=$(ls /sandbox/pypi-insiders_*_all.deb | head -n 1)
    [ -f "$deb" ] || fail "no .deb in /sandbox"
    systemctl stop $INDEX || fail "systemctl stop"
    # SO_REUSEADDR as servers set it: the index's closed connections may linger in TIME_WAIT
    python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(300)' "$PORT" &
    holder=$!
    wait_for 10 "another program holds port $PORT" \
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)"
    # The package's own start (an upgrade's path): apt neither hangs nor stays silent.
    DEBIAN_FRONTEND=noninteractive timeout 120 apt-get install -y -q --reinstall "$deb" >"$WORK/port.log" 2>&1 \
        || fail "apt-get install --reinstall with the port taken: $(tail -5 "$WORK/port.log")"
    grep "pypi-insiders: $INDEX is not running; it retries every 5 s: server.listen: cannot listen on 127.0.0.1:$PORT: Address already in use" \
        "$WORK/port.log" >/dev/null || fail "apt did not say why the index waits: $(grep pypi-insiders "$WORK/port.log")"
    ok "apt said: $(grep 'is not running' "$WORK/port.log")"
    exited_69() { journalctl -u $INDEX -o cat --no-pager | grep 'status=69/' >/dev/null; }
    wait_for 10 "the index exited 69 (address in use)" exited_69
    restarted() { [ "$(systemctl show -p NRestarts --value $INDEX)" -ge 1 ]; }
    wait_for 20 "systemd restarts it while the port is taken" restarted
    kill "$holder"; wait "$holder" 2>/dev/null || true
    wait_for 30 "$INDEX serves once the port is free" page_has "$(index_url /simple/)" "<html"
    wait_for 30 "$INDEX active once the port is free" unit_active $INDEX
}

# ------------------------------------------------------------------------------------------
test_reinstall() {
    step "reinstalling (an upgrade's path) keeps the admin's config and restarts the index"
    local deb before
    deb=$(ls /sandbox/pypi-insiders_*_all.deb | head -n 1)
    [ -f "$deb" ] || fail "no .deb in /sandbox"
    before=$(sha256sum "$CONFIG")
    main_pid=$(systemctl show -p MainPID --value $INDEX)
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q --reinstall "$deb" >"$WORK/reinstall.log" 2>&1 \
        || fail "apt-get install --reinstall: $(tail -5 "$WORK/reinstall.log")"
    [ "$(sha256sum "$CONFIG")" = "$before" ] || fail "reinstalling replaced the edited $CONFIG"
    [ "$(stat -c '%U:%G %a' /etc/pypi-insiders/credentials)" = "root:pypi-insiders 750" ] \
        || fail "reinstalling changed /etc/pypi-insiders/credentials"
    wait_for 30 "$INDEX active after the reinstall" page_has "$(index_url /simple/localthing/)" "localthing-1.0"
    [ "$(systemctl show -p MainPID --value $INDEX)" != "$main_pid" ] || fail "the reinstall did not restart $INDEX"
    [ "$(systemctl is-enabled $TIMER)" = enabled ] || fail "$TIMER not enabled after the reinstall"
}

# ------------------------------------------------------------------------------------------
test_stop() {
    step "systemctl stop stops cleanly"
    stop_start=$(date +%s%N)
    systemctl stop $INDEX || fail "systemctl stop"
    stop_ms=$(( ($(date +%s%N) - stop_start) / 1000000 ))
    [ "$(systemctl is-active $INDEX || true)" = inactive ] || fail "$INDEX is $(systemctl is-active $INDEX || true)"
    [ "$(systemctl show -p Result --value $INDEX)" = success ] || fail "stop result: $(systemctl show -p Result --value $INDEX)"
    [ "$stop_ms" -lt 10000 ] || fail "stop took $stop_ms ms"
    ok "stopped in $stop_ms ms, result success"
}

# ------------------------------------------------------------------------------------------
test_purge() {
    step "apt remove keeps config and data; apt purge removes config, data and the account"
    cleanup; upstream_pid=""
    echo "data the admin keeps" > /var/lib/pypi-insiders/e2e-marker
    systemctl start $INDEX || fail "systemctl start before the removal"
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -q pypi-insiders >/dev/null || fail "apt-get remove"
    if systemctl is-active --quiet $INDEX; then fail "remove left $INDEX running"; fi
    [ -f "$CONFIG" ] || fail "remove deleted $CONFIG"
    [ -f /var/lib/pypi-insiders/e2e-marker ] || fail "remove deleted /var/lib/pypi-insiders"
    getent passwd pypi-insiders >/dev/null || fail "remove deleted the user"
    ok "after remove: config, data and user kept"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q pypi-insiders >/dev/null || fail "apt-get purge"
    for path in /etc/pypi-insiders /var/lib/pypi-insiders /var/cache/pypi-insiders \
                /etc/systemd/system/multi-user.target.wants/$INDEX /etc/systemd/system/timers.target.wants/$TIMER \
                /etc/systemd/system/paths.target.wants/$PATH_UNIT; do
        [ ! -e "$path" ] || fail "purge left $path"
    done
    if getent passwd pypi-insiders >/dev/null; then fail "purge left the user"; fi
    if getent group pypi-insiders >/dev/null; then fail "purge left the group"; fi
    ok "after purge: no config, no state, no cache, no user, no group"

}

# ------------------------------------------------------------------------------------------
# Sections run in this order, each relying on the ones before; naming some (after PORT) runs
# only those, for working on one part of the package.
ALL_SECTIONS=(installed footprint security upstream pip journal upload yank nginx mirror reload fetch webhook cli user_units
              broken port_in_use reinstall stop purge)
sections=("${@:2}")
[ ${#sections[@]} -gt 0 ] || sections=("${ALL_SECTIONS[@]}")
for section in "${sections[@]}"; do
    "test_$section"
done
step "end-to-end checks passed: ${sections[*]}"
