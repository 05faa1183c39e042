#!/usr/bin/env bash
# Run this checkout's kws-edge on an emulated Raspberry Pi OS userland and compare with x86.
#
#   sudo devices/emulate_pi.sh [--variant bookworm-arm64|bullseye-armhf] [--bundle DIR] [--out DIR]
#                              [--audio WAV_DIR] [--threshold T]
#
# bookworm-arm64 (default): 64-bit Raspberry Pi OS (Debian bookworm, Python 3.11), Pi 4 CPU
#   (Cortex-A72); `pip install kws_edge-*.whl` takes the runtime dependencies from PyPI
#   (numpy, scipy, python_speech_features, click, ai-edge-litert), as a Pi user would.
# bullseye-armhf: 32-bit Pi OS (Debian bullseye, Python 3.9), Debian's python3-numpy/scipy,
#   tflite-runtime 2.11.0 from PyPI, the wheel installed with --no-deps.
#
# Steps: debootstrap a minimal rootfs with qemu-user-static (once; reused from
# $KWS_PI_ROOTFS/<variant>, default /var/tmp/kws-pi-rootfs), build the wheel of this checkout,
# install it in a venv inside the rootfs, run `kws classify --json`, `kws detect --json` and
# `kws bench --json --seconds 5` on test audio there, run classify/detect on x86 too, and
# compare (devices/pi_check.py compare). Exit status: 0 match, 1 mismatch or failure.
# --audio: the 16 kHz mono 16-bit WAVs of WAV_DIR (e.g. real speech clips) instead of the test tones;
# --threshold: one detection threshold for both sides (a low one gives many events to compare).
# bullseye-armhf compares with x86 running TFLite's builtin int8 kernels (KWS_EDGE_KERNELS=builtin), the ones
# tflite-runtime 2.11 uses; XNNPACK (x86 and arm64 default) rounds differently, a few 1/256 steps.
#
# Emulation-only workarounds (../shared/RASPBERRY-PI.md): a Raspberry-Pi cpuinfo text is
# bind-mounted over <rootfs>/proc/cpuinfo (LiteRT reads it and segfaults on the host's x86
# text), and QEMU_CPU names the Pi's core (qemu's default "max" CPU advertises SME, whose
# XNNPACK path returns wrong outputs under emulation). Every mount is undone on exit (trap).
# Timings inside the emulation mean nothing (~100x slower than a real board).
set -euo pipefail
# The whole body is one function, parsed before it runs: editing this file during a run cannot
# make bash execute a half-read line.

MOUNTS=()
ROOTFS=""
WORK=""

main() {
    VARIANT=bookworm-arm64
    BUNDLE=""
    REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    ROOT_BASE="${KWS_PI_ROOTFS:-/var/tmp/kws-pi-rootfs}"
    OUT=""
    MIRROR="${KWS_PI_MIRROR:-http://deb.debian.org/debian}"
    HOST_KWS="${KWS_PI_HOST_KWS:-}"
    AUDIO_DIR=""
    THRESHOLD_ARG=""

    while [ $# -gt 0 ]; do
        case "$1" in
            --variant) VARIANT="$2"; shift 2 ;;
            --bundle) BUNDLE="$(cd "$2" && pwd)"; shift 2 ;;
            --out) OUT="$2"; shift 2 ;;
            --audio) AUDIO_DIR="$(cd "$2" && pwd)"; shift 2 ;;
            --threshold) THRESHOLD_ARG="--threshold $2"; shift 2 ;;
            -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
            *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
        esac
    done

    case "$VARIANT" in
        bookworm-arm64)
            ARCH=arm64; SUITE=bookworm; CPU=cortex-a72; CPUINFO=pi4
            INCLUDE=python3,python3-venv,python3-pip,ca-certificates ;;
        bullseye-armhf)
            ARCH=armhf; SUITE=bullseye; CPU=cortex-a15; CPUINFO=pi3-armhf
            INCLUDE=python3,python3-venv,python3-pip,ca-certificates,python3-numpy,python3-scipy ;;
        *) echo "error: unknown variant $VARIANT; use bookworm-arm64 or bullseye-armhf" >&2; exit 2 ;;
    esac

    [ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap, mount and chroot need it)" >&2; exit 2; }
    ROOTFS="$ROOT_BASE/$VARIANT"
    OUT="${OUT:-/var/tmp/kws-pi-results/$VARIANT}"
    WORK="$(mktemp -d /var/tmp/kws-pi-work.XXXXXX)"
    T0=$(date +%s)

    log() { printf '[%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

    cleanup() {  # on every exit path: undo the mounts (innermost first), remove scratch
        local rc=$?
        local i
        for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
            mountpoint -q "${MOUNTS[$i]}" 2>/dev/null && { umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}"; }
        done
        # and anything a failed debootstrap left mounted in its target (deepest first)
        if [ -n "$ROOTFS" ]; then
            awk -v a="$ROOTFS/" -v b="$ROOTFS.partial/" 'index($2, a) == 1 || index($2, b) == 1 {print $2}' /proc/mounts \
                | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
        fi
        [ -n "$WORK" ] && rm -rf "$WORK"
        [ -n "$ROOTFS" ] && rm -rf "$ROOTFS/tmp/kws-check" 2>/dev/null
        exit $rc
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    mount_into() {  # mount_into TARGET ARGS...  (remembered for cleanup)
        local target="$1"; shift
        mount "$@" "$target"
        MOUNTS+=("$target")
    }

    # ---- host tools and binfmt
    need=()
    command -v debootstrap >/dev/null || need+=(debootstrap)
    [ -e /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    QEMU_NAME=$([ "$ARCH" = arm64 ] && echo qemu-aarch64 || echo qemu-arm)
    update-binfmts --enable "$QEMU_NAME" >/dev/null 2>&1 || true
    [ -e "/proc/sys/fs/binfmt_misc/$QEMU_NAME" ] || { echo "error: binfmt entry $QEMU_NAME missing" >&2; exit 1; }

    # ---- rootfs (built once, then reused)
    if [ ! -e "$ROOTFS/.kws-rootfs-ok" ]; then
        log "debootstrap $SUITE $ARCH into $ROOTFS (one time, a few minutes)"
        rm -rf "$ROOTFS.partial"
        mkdir -p "$ROOT_BASE"
        if ! debootstrap --arch="$ARCH" --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS.partial" "$MIRROR" \
                >"$WORK/debootstrap.log" 2>&1; then
            if [ "$SUITE" = bullseye ] && [ -z "${KWS_PI_MIRROR:-}" ]; then
                log "deb.debian.org failed for bullseye; trying archive.debian.org"
                rm -rf "$ROOTFS.partial"
                debootstrap --arch="$ARCH" --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS.partial" \
                    http://archive.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
                    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
            else
                tail -20 "$WORK/debootstrap.log" >&2; exit 1
            fi
        fi
        rm -rf "$ROOTFS"
        mv "$ROOTFS.partial" "$ROOTFS"
        touch "$ROOTFS/.kws-rootfs-ok"
    else
        log "reusing rootfs $ROOTFS"
    fi

    # ---- this checkout's wheel, built outside the repository: from the committed tree (HEAD) by default,
    #      from the working tree with KWS_PI_WORKTREE=1 (uncommitted changes included)
    log "building the wheel of $REPO ($([ "${KWS_PI_WORKTREE:-0}" = 1 ] && echo working tree || git -C "$REPO" rev-parse --short HEAD))"
    HOST_PY="${KWS_PI_HOST_PYTHON:-}"
    [ -z "$HOST_PY" ] && { [ -x "$REPO/.venv/bin/python" ] && HOST_PY="$REPO/.venv/bin/python" || HOST_PY=python3; }
    mkdir -p "$WORK/src" "$WORK/dist"
    if [ "${KWS_PI_WORKTREE:-0}" = 1 ]; then
        (cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - --ignore-failed-read 2>/dev/null) \
            | tar -xf - -C "$WORK/src"
    else
        git -C "$REPO" archive HEAD | tar -xf - -C "$WORK/src"
    fi
    "$HOST_PY" -m pip wheel --no-deps --no-build-isolation -q -w "$WORK/dist" "$WORK/src" >/dev/null 2>"$WORK/wheel.log" \
        || { cat "$WORK/wheel.log" >&2; exit 1; }
    WHEEL="$(ls "$WORK"/dist/kws_edge-*.whl)"
    log "wheel: $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KB)"

    # ---- bundle and test audio
    if [ -z "$BUNDLE" ]; then
        if unzip -l "$WHEEL" 2>/dev/null | grep -q 'kws_edge/default_bundle/manifest.json' \
            || "$HOST_PY" - "$WHEEL" <<'EOF'
import sys, zipfile
sys.exit(0 if "kws_edge/default_bundle/manifest.json" in zipfile.ZipFile(sys.argv[1]).namelist() else 1)
EOF
        then
            log "bundle: the default bundle inside the wheel"
        else
            BUNDLE="$WORK/src/tests/data/tone_bundle"
            log "bundle: NO default bundle in the wheel; using the test bundle $BUNDLE"
        fi
    fi
    CHECK="$ROOTFS/tmp/kws-check"
    rm -rf "$CHECK"; mkdir -p "$CHECK/pi" "$OUT/x86" "$OUT/pi"
    cp "$WHEEL" "$CHECK/"
    if [ -n "$AUDIO_DIR" ]; then
        ls "$AUDIO_DIR"/*.wav >/dev/null 2>&1 || { echo "error: no .wav files in $AUDIO_DIR" >&2; exit 2; }
        python3 "$REPO/devices/pi_check.py" audio "$CHECK/audio" "$AUDIO_DIR"/*.wav >/dev/null
    else
        python3 "$REPO/devices/pi_check.py" audio "$CHECK/audio" "$WORK"/src/tests/data/tone_*.wav >/dev/null
    fi
    (cd "$CHECK/audio" && ls *.wav | grep -vx stream.wav) >"$WORK/clips.txt"
    BUNDLE_ARG=""
    if [ -n "$BUNDLE" ]; then
        cp -r "$BUNDLE" "$CHECK/bundle"
        BUNDLE_ARG="--bundle /tmp/kws-check/bundle"
    fi
    python3 "$REPO/devices/pi_check.py" cpuinfo "$CPUINFO" >"$WORK/cpuinfo"

    # ---- mounts (undone by the trap)
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/kws-host-ca.crt"
    mount_into "$ROOTFS/proc" -t proc proc
    mount_into "$ROOTFS/sys" -t sysfs sysfs
    mount_into "$ROOTFS/dev" --bind /dev
    mount_into "$ROOTFS/dev/pts" --bind /dev/pts
    mount_into "$ROOTFS/proc/cpuinfo" --bind "$WORK/cpuinfo"

    in_pi() {  # run a shell snippet inside the emulated Pi
        chroot "$ROOTFS" /usr/bin/env -i PATH=/opt/kws-venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
            QEMU_CPU="$CPU" PIP_CERT=/etc/kws-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=0 \
            PYTHONDONTWRITEBYTECODE=1 /bin/sh -ec "$1"
    }

    log "inside the emulated Pi: $(in_pi 'uname -m; python3 --version' | tr '\n' ' ')"
    log "installing the wheel in /opt/kws-venv (runtime only)"
    if [ "$VARIANT" = bookworm-arm64 ]; then
        in_pi "[ -x /opt/kws-venv/bin/pip ] || python3 -m venv /opt/kws-venv
               pip uninstall -q -y kws-edge >/dev/null 2>&1 || true
               pip install -q /tmp/kws-check/$(basename "$WHEEL")"
    else
        in_pi "[ -x /opt/kws-venv/bin/pip ] || python3 -m venv --system-site-packages /opt/kws-venv
               pip install -q 'tflite-runtime==2.11.0' 'python_speech_features==0.6' 'click>=8.0'
               pip uninstall -q -y kws-edge >/dev/null 2>&1 || true
               pip install -q --no-deps /tmp/kws-check/$(basename "$WHEEL")"
    fi
    in_pi "python -c 'import sys, numpy, kws_edge, kws_edge.engine as e; print(sys.version.split()[0], numpy.__version__, e.available_backends(), \"tensorflow\" in sys.modules)'" \
        | sed 's/^/    python, numpy, interpreters, tensorflow imported: /' >&2
    in_pi "pip list 2>/dev/null | grep -iE '^(kws-edge|numpy|scipy|ai-edge-litert|tflite-runtime|python.speech.features|click) '" \
        >"$OUT/pi/pip-list.txt" || true

    log "classify, detect and bench in the emulated Pi"
    FILES="$(sed 's#^#/tmp/kws-check/audio/#' "$WORK/clips.txt" | tr '\n' ' ')"
    in_pi "cd /tmp && kws classify --json $BUNDLE_ARG $FILES" >"$OUT/pi/classify.jsonl"
    in_pi "cd /tmp && kws detect --json $BUNDLE_ARG $THRESHOLD_ARG /tmp/kws-check/audio/stream.wav $FILES" \
        >"$OUT/pi/detect.jsonl"
    set +e
    in_pi "kws bench --json --seconds 5 $BUNDLE_ARG" >"$OUT/pi/bench.json" 2>"$OUT/pi/bench.stderr"
    BENCH_RC=$?
    set -e
    # exit 1 = over the profile's budgets, expected: emulation is ~100x slower than a board
    if [ $BENCH_RC -gt 1 ] || ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/pi/bench.json" 2>/dev/null; then
        echo "error: kws bench failed inside the emulated Pi (exit $BENCH_RC):" >&2; cat "$OUT/pi/bench.stderr" >&2; exit 1
    fi
    python3 - "$OUT/pi/bench.json" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
print(f"    kws bench (emulated, timings meaningless): device {r['device']}, backend {r['backend']}, "
      f"rtf {r['real_time_factor']:.2f}, model {r['model_bytes']} B, activations {r['activation_bytes']} B, "
      f"within_budget {r['within_budget']}")
EOF

    log "classify and detect on x86"
    if [ -z "$HOST_KWS" ]; then
        [ -x "$REPO/.venv/bin/kws" ] && HOST_KWS="$REPO/.venv/bin/kws" || HOST_KWS=kws
    fi
    HOST_BUNDLE_ARG=""
    [ -n "$BUNDLE" ] && HOST_BUNDLE_ARG="--bundle $CHECK/bundle"
    HOST_FILES="$(sed 's#^#audio/#' "$WORK/clips.txt" | tr '\n' ' ')"
    if [ "$VARIANT" = bullseye-armhf ]; then
        # tflite-runtime 2.11 runs TFLite's own int8 kernels; x86's ai_edge_litert uses XNNPACK, which rounds
        # differently (scores a few 1/256 steps apart): compare like with like.
        export KWS_EDGE_KERNELS=builtin
        log "x86 side with TFLite's builtin kernels (KWS_EDGE_KERNELS=builtin), as tflite-runtime runs them"
    fi
    (cd "$CHECK" && "$HOST_KWS" classify --json $HOST_BUNDLE_ARG $HOST_FILES) >"$OUT/x86/classify.jsonl"
    (cd "$CHECK" && "$HOST_KWS" detect --json $HOST_BUNDLE_ARG $THRESHOLD_ARG audio/stream.wav $HOST_FILES) \
        >"$OUT/x86/detect.jsonl"

    log "comparing (results kept in $OUT)"
    python3 "$REPO/devices/pi_check.py" compare "$OUT/x86" "$OUT/pi"
    log "done: $VARIANT matches x86"
}

main "$@"; exit $?  # never read past this line (the file may change during a long run)
