#!/usr/bin/env bash
# CI: build the CPU image without Docker Hub and run the smoke reproduction inside it offline.
#
#   docker/ci_build.sh            (as root on Debian 12; nox -s docker_build calls it)
#   docker/ci_build.sh gpu        the GPU variant over a stand-in CUDA base (not in CI: a 4 GB
#                                 download; nox -s docker_build -- gpu)
#
# The GPU variant's stand-in base is the same debootstrapped Debian with the host's CUDA toolkit
# ($CUDA_HOME, 13.x) copied to /usr/local/cuda, standing in for nvidia/cuda:13.0.x-devel; torch and
# the nvidia-* runtime wheels come from PyPI through docker/requirements-gpu.lock. Without a GPU
# the checks are: the CUDA extension was compiled (sm_80/sm_90), torch, the extension and DeepSpeed
# import, and the smoke reproduction runs on the CPU inside the GPU image, offline.
#
# 1. debootstrap a Debian bookworm root file system (Python 3.11) and `podman import` it: the
#    stand-in for the pinned python:3.11-slim-bookworm base, referenced by its local digest, so
#    the Dockerfile's digest pin is exercised for real;
# 2. `podman build` docker/Dockerfile (runc, capped ulimits, --network host for the build only)
#    from a clean copy of the checkout (tracked + untracked-not-ignored files), with the CPU lock;
# 3. `podman run --network none` the smoke reproduction (XLREPRO_OFFLINE=1) as the image's
#    non-root user, with results/ mounted, and check what it wrote;
# 4. train the smoke pipeline on the DeepSpeed engine inside the image (ZeRO-2/ZeRO-3/offload), as
#    an arbitrary uid and offline, with the DeepSpeed ops the image compiled at build time;
# 5. always clean up (trap): containers, images and the private podman storage are removed.
#
# Everything podman stores lives under one temporary folder (--root/--runroot), so the host's
# podman state is never touched. Knobs (environment):
#   XLREPRO_CI_OUT     where the smoke outputs are copied (default results/docker-smoke)
#   XLREPRO_CI_KEEP=1  keep the temporary folder and the image (for debugging; prints the path)
#   DEBIAN_MIRROR      default http://deb.debian.org/debian
#   PIP_CERT           a CA bundle handed to pip inside the build as a secret (TLS-intercepting proxies)
#   PIP_FIND_LINKS     a folder holding torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl; when
#                      present the wheel is used instead of https://download.pytorch.org/whl/cpu
#                      (the hash in docker/torch-cpu.lock is checked either way)
set -euo pipefail
VARIANT=${1:-${XLREPRO_CI_VARIANT:-cpu}}
case "$VARIANT" in cpu|gpu) ;; *) echo "usage: docker/ci_build.sh [cpu|gpu]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
REPO=$(pwd)
t0=$(date +%s)
step() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
die() { echo "ci_build: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (rootful podman and debootstrap)"
command -v git >/dev/null || die "git is needed (the build context is the checkout's file list)"
if [ "$VARIANT" = gpu ]; then
  CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  [ -x "$CUDA_HOME/bin/nvcc" ] || die "gpu: no nvcc under CUDA_HOME=$CUDA_HOME (the stand-in base copies that toolkit)"
  "$CUDA_HOME/bin/nvcc" --version | grep -q "release 13\." || die "gpu: $CUDA_HOME is not CUDA 13.x (torch 2.13.0 from PyPI is built for CUDA 13.0)"
fi

step "packages: podman, runc, debootstrap (Debian bookworm)"
missing=()
for c in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}" containernetworking-plugins
fi
podman --version; runc --version | head -1

T=$(mktemp -d /var/tmp/xlrepro-ci.XXXXXX)
P=(podman --root "$T/storage" --runroot "$T/run" --tmpdir "$T/tmp")
IMAGE=localhost/xlrepro:ci-$VARIANT
BASE=localhost/xlrepro-base:bookworm-$VARIANT
cleanup() {
  rc=$?
  set +e +o pipefail  # best effort from here on: a failed step must not skip the rest
  if [ "${XLREPRO_CI_KEEP:-0}" = 1 ]; then
    echo "ci_build: kept $T (podman --root $T/storage --runroot $T/run ...)"
  else
    "${P[@]}" rm -a -f >/dev/null 2>&1 || true
    "${P[@]}" rmi -a -f >/dev/null 2>&1 || true
    # unmount anything podman left mounted below $T before deleting it
    grep -o " $T/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf "$T"
  fi
  echo "ci_build: exit $rc after $(( $(date +%s) - t0 )) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$T/tmp" "$T/ctx" "$T/out"

# podman 4.3 on this host: crun cannot run on cgroup v1 hybrid hosts, and podman's default
# nofile/nproc ulimits exceed what root without CAP_SYS_RESOURCE may set (pitfalls B5).
cat > "$T/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$T/containers.conf"

step "stand-in base: debootstrap bookworm (minbase + python3, venv, ca-certificates)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$T/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$T/debootstrap.log" 2>&1 \
  || { tail -30 "$T/debootstrap.log"; die "debootstrap failed"; }
base_env=(--change 'ENV LANG=C.UTF-8')
if [ "$VARIANT" = gpu ]; then
  step "stand-in CUDA base: the host's toolkit ($CUDA_HOME) in /usr/local/cuda"
  cuda_dir=$(readlink -f "$CUDA_HOME")
  mkdir -p "$T/rootfs/usr/local"
  cp -a "$cuda_dir" "$T/rootfs/usr/local/$(basename "$cuda_dir")"
  [ "$(basename "$cuda_dir")" = cuda ] || ln -s "$(basename "$cuda_dir")" "$T/rootfs/usr/local/cuda"
  base_env+=(--change 'ENV PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
             --change 'ENV CUDA_HOME=/usr/local/cuda')
fi
tar --numeric-owner -C "$T/rootfs" -cf "$T/base.tar" .
rm -rf "$T/rootfs"
"${P[@]}" import --change 'CMD ["/bin/bash"]' "${base_env[@]}" "$T/base.tar" "$BASE" >/dev/null
rm -f "$T/base.tar"
BASE_DIGEST=$("${P[@]}" image inspect "$BASE" --format '{{.Digest}}')
BASE_IMAGE="$BASE@$BASE_DIGEST"
echo "BASE_IMAGE=$BASE_IMAGE"

step "build context: clean copy of the checkout"
# tracked files plus untracked ones git does not ignore, minus tool caches (.mypy_cache etc.)
git ls-files -z --cached --others --exclude-standard \
  | grep -zvE '(^|/)(\.[A-Za-z_-]*cache|__pycache__)/' \
  | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
  | tar --null -T - -cf - | tar -C "$T/ctx" -xf -
WHEELS=""
TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
whl=torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
[ "$VARIANT" = cpu ] || PIP_FIND_LINKS=""  # the GPU lock takes torch and its CUDA wheels from PyPI
for d in ${PIP_FIND_LINKS:-}; do
  if [ -f "$d/$whl" ]; then
    mkdir -p "$T/ctx/docker/wheels" && cp "$d/$whl" "$T/ctx/docker/wheels/"
    WHEELS=wheels; TORCH_INDEX_URL=""; echo "torch CPU wheel from $d (hash-checked against docker/torch-cpu.lock)"
    break
  fi
done
GIT_COMMIT=$(git rev-parse HEAD)
SDE=$(git log -1 --format=%ct)
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "note: the checkout has uncommitted changes; they are in the image"

step "podman build ($VARIANT variant, --network host for the build only)"
secret=()
if [ -n "${PIP_CERT:-}" ] && [ -s "$PIP_CERT" ]; then secret=(--secret "id=extra_ca,src=$PIP_CERT"); fi
if [ "$VARIANT" = cpu ]; then
  variant_args=(--build-arg LOCK=docker/requirements-cpu.lock --build-arg TORCH_LOCK=docker/torch-cpu.lock
                --build-arg TORCH_INDEX_URL="$TORCH_INDEX_URL" --build-arg WHEELS="$WHEELS")
else  # the GPU variant's arguments, as docker/README.md gives them
  variant_args=(--build-arg LOCK=docker/requirements-gpu.lock --build-arg TORCH_LOCK= --build-arg TORCH_INDEX_URL=
                --build-arg XLREPRO_USE_CUDA=1 --build-arg TORCH_CUDA_ARCH_LIST="8.0;9.0"
                --build-arg XLREPRO_DS_ACCELERATOR=cuda --build-arg DEEPSPEED_PREBUILD=)
fi
"${P[@]}" build --format oci --timestamp "$SDE" --network host --pull=never \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg SOURCE_DATE_EPOCH="$SDE" \
  "${variant_args[@]}" \
  --build-arg GIT_COMMIT="$GIT_COMMIT" \
  "${secret[@]}" \
  -f "$T/ctx/docker/Dockerfile" -t "$IMAGE" "$T/ctx"
IMAGE_DIGEST=$("${P[@]}" image inspect "$IMAGE" --format '{{.Digest}}')
IMAGE_ID=$("${P[@]}" image inspect "$IMAGE" --format '{{.Id}}')
echo "image $IMAGE id $IMAGE_ID digest $IMAGE_DIGEST size $("${P[@]}" image inspect "$IMAGE" --format '{{.Size}}') bytes"
rm -rf "$T/ctx"

step "image checks: non-root user, entrypoint, image record"
uid=$("${P[@]}" run --rm --network none --entrypoint id "$IMAGE" -u)
[ "$uid" != 0 ] || die "the image runs as root"
echo "runs as uid $uid"
"${P[@]}" run --rm --network none "$IMAGE" info
"${P[@]}" run --rm --network none --entrypoint cat "$IMAGE" /opt/xlrepro/image.json | tee "$T/image.json"
"${P[@]}" run --rm --network none "$IMAGE" info --json > "$T/info.json"
python3 - "$VARIANT" "$T/image.json" "$T/info.json" <<'EOF'
import json, sys
variant, image, info = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
ds = image["deepspeed"]
assert ds.get("version") and info["deepspeed"]["version"] == ds["version"], "the image has no deepspeed"
assert info["extension_loaded"], f"xlrepro._C does not load: {info['reason']}"
if variant == "cpu":
    missing = {"deepspeed_shm_comm", "cpu_adam"} - set(ds["prebuilt_ops"])
    assert not missing, f"DeepSpeed ops not compiled at build time: {sorted(missing)}"
    assert info["build"]["extension"] == "cpu"
else:
    b = info["build"]
    assert b["extension"] == "cuda" and b["cuda_arch_list"] == "8.0;9.0", b
    assert (info["torch_cuda"] or "").startswith("13.0"), info["torch_cuda"]
    assert ds["ds_accelerator"] == "cuda" and ds["prebuilt_ops"] == [], ds
print(f"{variant} image: xlrepro._C {info['build']['extension']}, torch {info['torch']} (CUDA {info['torch_cuda']}), "
      f"deepspeed {ds['version']}, ops compiled at build time: {', '.join(ds['prebuilt_ops']) or 'none'}")
EOF

step "smoke reproduction inside the image, network off"
chown "$uid" "$T/out"
"${P[@]}" run --rm --network none \
  -e XLREPRO_OFFLINE=1 -e XLREPRO_IMAGE_DIGEST="$IMAGE_DIGEST" \
  -v "$T/out:/srv/xlrepro/results" \
  "$IMAGE" reproduce smoke --out results/smoke
for f in results.json report.md scores.png; do
  [ -s "$T/out/smoke/$f" ] || die "the smoke run wrote no $f"
done
python3 - "$T/out/smoke/results.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n = len(r.get("records", []))
assert n > 0, "results.json has no records"
print(f"results.json: {n} records")
EOF

if [ "$VARIANT" = cpu ]; then
step "DeepSpeed inside the image, network off, as another uid (ZeRO-2, ZeRO-3 hand-off, ZeRO-2 offload)"
# the same pipeline on the DeepSpeed engine: pretraining on ZeRO-2, the intermediate phase (MLM
# mixed in) on ZeRO-3 with the consolidated safetensors hand-off, the target phase on ZeRO-2 with
# optimizer offload (DeepSpeed's CPU Adam); the ops compiled at build time must load as they are
mkdir -p "$T/ds" && chmod 777 "$T/ds"
inter="{lr: 2.0e-4, batch_size: 8, grad_accum: 2, max_steps: 6, eval_every_steps: 3, eval_subset: 40, checkpoint_every_steps: 3, max_seq_length: 48, engine: deepspeed, deepspeed: zero3}"
target="{lr: 2.0e-4, batch_size: 8, grad_accum: 2, max_steps: 6, eval_every_steps: 3, eval_subset: 40, checkpoint_every_steps: 3, max_seq_length: 48, engine: deepspeed, deepspeed: zero2-offload}"
"${P[@]}" run --rm --network none --user 4242:4242 -e HOME=/tmp -e XLREPRO_OFFLINE=1 \
  -v "$T/ds:/srv/xlrepro/results" --entrypoint bash "$IMAGE" -c '
    set -euo pipefail
    xlrepro info | grep "^deepspeed"
    xlrepro train smoke --out results/ds smoke.n_train=120 smoke.n_dev=40 smoke.n_test=40 smoke.n_corpus=600 \
      pretrain.steps=6 pretrain.batch_size=16 pretrain.engine=deepspeed pretrain.deepspeed=zero2 \
      "intermediate.train=$1" intermediate.mlm_mix=0.3 "target.tasks=[xnli]" "target.per_task={}" \
      "target.train=$2" "retrieval.tasks=[]" "controls=[]"
    # the ops load from a private copy of the read-only folder (modification times kept)
    rebuilt=$(find /opt/xlrepro/torch_extensions /tmp/.cache/xlrepro-ops-image-* -name "*.so" \
      -newer /opt/xlrepro/image.json 2>/dev/null || true)
    [ -z "$rebuilt" ] || { echo "DeepSpeed ops were recompiled at run time: $rebuilt" >&2; exit 1; }
    if ls /tmp/.cache 2>/dev/null | grep -q xlrepro-torch-extensions; then
      echo "DeepSpeed ops were compiled into a per-CPU cache at run time" >&2; exit 1
    fi
    echo "DeepSpeed ops loaded as compiled at build time"
  ' bash "$inter" "$target"
python3 - "$T/ds/ds/results.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert {x["task"] for x in r["records"]} == {"xnli"}, r["records"][:3]
print(f"DeepSpeed run: {len(r['records'])} xnli records")
EOF
else
  echo "gpu variant: no DeepSpeed run here (its engine needs the GPU the image is for; none is here)"
fi

OUT=${XLREPRO_CI_OUT:-$REPO/results/docker-smoke$([ "$VARIANT" = cpu ] || echo "-$VARIANT")}
mkdir -p "$OUT" && cp -r "$T/out/smoke/." "$OUT/"
cat > "$OUT/image.txt" <<EOF
variant=$VARIANT
image_id=$IMAGE_ID
image_digest=$IMAGE_DIGEST
base_image=$BASE_IMAGE
git_commit=$GIT_COMMIT
source_date_epoch=$SDE
EOF
step "OK: image built and smoke reproduction passed offline; outputs in $OUT"
