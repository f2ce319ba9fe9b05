#!/usr/bin/env bash
# The GPU check: `hgsearch bench --device cuda --suite gpu` on a fresh copy of this repository.
#
#   cluster/gpu_check.sh [--out DIR] [more `hgsearch bench` options, e.g. --quick, --only PARTS]
#
# Writes DIR/gpu-<host>-<time>.json (every figure, the machine, the versions), the table beside
# it (.txt) and the whole log (DIR/gpu-check.log); DIR defaults to results/bench. The full size
# aims at under 8 minutes on one H200; --quick runs the same code on smaller networks.
#
# It installs only what the parts asked for need and PYTHON lacks, and only from PyPI (or from
# WHEELS, a folder of wheels, for a machine without network; `pip download --only-binary=:all:
# --python-version X.Y -d DIR REQ` on a machine with network fetches them with their
# dependencies). Only the sweep part needs Ray, Optuna, pandas, pyarrow and PyYAML:
# - when PYTHON (default python3) already imports everything the suite needs, it is used as it
#   is and nothing is installed (hgsearch itself runs from this folder through PYTHONPATH);
# - else a venv (VENV, default $TMPDIR/hgsearch-gpu-venv) is made that also sees PYTHON's
#   packages (a .pth file, so a CUDA build of torch that is already there is reused, never
#   downloaded again), and pip installs the missing requirements into it, with the versions
#   pyproject.toml asks for.
#
# Settings: PYTHON, VENV, WHEELS, DEVICE (cuda; cpu tries the script without a GPU), LIMIT
# (seconds the suite may run, default 570: its JSON is rewritten after every part, so a run cut
# short still leaves the parts that finished).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
venv=${VENV:-${TMPDIR:-/tmp}/hgsearch-gpu-venv}
device=${DEVICE:-cuda}
limit=${LIMIT:-570}

out=results/bench
only=sweep   # the parts asked for (--only); by default all, the sweep among them
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  next=${args[i + 1]:-}
  case ${args[i]} in
    --out) out=$next ;;
    --out=*) out=${args[i]#--out=} ;;
    --only) only=$next ;;
    --only=*) only=${args[i]#--only=} ;;
  esac
done
mkdir -p "$out"
log=$out/gpu-check.log
exec > >(tee "$log") 2>&1

# module the suite imports -> the requirement that provides it (pyproject.toml's versions);
# onnx/onnxscript (model export) and the dev tools are not needed here, and Ray, Optuna, pandas,
# pyarrow, PyYAML and rich (its console) only by the sweep part
declare -A need=(
  [torch]="torch>=2.4" [torchvision]="torchvision>=0.19" [numpy]="numpy>=1.26"
  [PIL]="pillow>=10"
)
if [[ ,$only, == *,sweep,* ]]; then
  need+=([ray.tune]="ray[tune]>=2.40" [optuna]="optuna>=4.0" [pandas]="pandas>=2.0"
         [pyarrow]="pyarrow>=15" [yaml]="pyyaml>=6" [rich]="rich>=13")
fi

missing() {  # the requirements whose module $1 (a python) cannot import, one per line
  local py=$1 module pairs=()
  for module in "${!need[@]}"; do pairs+=("$module=${need[$module]}"); done
  "$py" - "${pairs[@]}" <<'PY'
import importlib, sys
for pair in sys.argv[1:]:
    module, _, requirement = pair.partition("=")
    try:
        importlib.import_module(module)
    except Exception:   # absent, or broken: either way pip should provide it
        print(requirement)
PY
}

echo "gpu check: $(date -u +%FT%TZ) on $(hostname), repository $(git rev-parse --short HEAD \
  2>/dev/null || echo '(not a git checkout)')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader || echo "nvidia-smi: not found"

mapfile -t todo < <(missing "$python")
if [[ ${#todo[@]} -eq 0 && -z ${GPU_CHECK_FORCE_VENV:-} ]]; then
  py=$python
  echo "using $python as it is: nothing to install"
else
  if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv --without-pip "$venv"
    # PYTHON's own packages (system or venv) stay visible, after the venv's
    parent=$("$python" -c 'import sysconfig; p = sysconfig.get_paths()
print(p["purelib"]); print(p["platlib"])' | sort -u)
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$parent" > "$site/_gpu_check_parent.pth"
  fi
  py=$venv/bin/python
  mapfile -t todo < <(missing "$py")
  if [[ ${#todo[@]} -gt 0 ]]; then
    echo "installing into $venv: ${todo[*]}"
    "$py" -m pip --version >/dev/null 2>&1 || "$py" -m ensurepip --upgrade >/dev/null
    source=(--retries 1 --timeout 15)
    [[ -n ${WHEELS:-} ]] && source=(--no-index --find-links "$WHEELS")
    # A failed install is not the end: only the sweep part needs Ray, Optuna, pandas, pyarrow
    # and PyYAML, and the parts that lack a module fail one by one, the others still run.
    for requirement in "${todo[@]}"; do   # one by one: one that cannot be had stops no other
      "$py" -m pip install --quiet "${source[@]}" "$requirement" \
        || echo "warning: pip could not install $requirement"
    done
    mapfile -t left < <(missing "$py")
    [[ ${#left[@]} -eq 0 ]] || echo "warning: still missing ${left[*]}; parts that need them fail"
  else
    echo "using $venv: nothing to install"
  fi
fi

"$py" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}")' \
  || { echo "gpu check: $py cannot import torch, which every part needs"; exit 2; }

# A fresh inductor cache: the compile time measured is that of a trial's first compile.
cache=$(mktemp -d /tmp/hgsearch-inductor-XXXXXX)
trap 'rm -rf "$cache"' EXIT
export TORCHINDUCTOR_CACHE_DIR=$cache PYTHONUNBUFFERED=1
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}

status=0
timeout --kill-after=20 "$limit" "$py" -m hgsearch.cli bench --suite gpu --device "$device" \
  --out "$out" "$@" || status=$?
[[ $status -eq 124 || $status -eq 137 ]] && echo "gpu check: stopped after $limit s (LIMIT)"
echo "gpu check: exit $status; log in $log"
exit "$status"
