#!/usr/bin/env bash
# Puts the app's native libraries under android/app/src/main/jniLibs/<abi>/:
#   libmobile_core.so  built from this repository's mobile-core with cargo-ndk, and
#   libonnxruntime.so  from the official ONNX Runtime Android package on Maven Central
#                      (com.microsoft.onnxruntime:onnxruntime-android:$ORT_VERSION).
#
# Needs: rustup targets aarch64-linux-android and x86_64-linux-android, `cargo install cargo-ndk`, an NDK
# (r28 or newer; ANDROID_NDK_HOME, or ANDROID_HOME/ndk/<version>), curl or wget, unzip.
#
# Environment:
#   ORT_VERSION  ONNX Runtime release (default: mobile-core's runtime::ORT_VERSION, 1.31.1); another one is
#                refused unless ORT_ALLOW_MISMATCH=1, since mobile-core is built against that API version.
#   ABIS         space-separated ABIs (default "arm64-v8a x86_64")
#   ORT_AAR      use this local .aar instead of downloading
#   ORT_SHA256   check the downloaded .aar against this digest
#   SKIP_CARGO=1 only fetch ONNX Runtime
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
android="$(dirname "$here")"
repo="$(dirname "$android")"
jnilibs="$android/app/src/main/jniLibs"
read -r -a abis <<< "${ABIS:-arm64-v8a x86_64}"

die() { echo "build-native: $*" >&2; exit 1; }

core_ort="$(sed -n 's/^pub const ORT_VERSION: &str = "\(.*\)";/\1/p' "$repo/mobile-core/src/runtime.rs")"
[ -n "$core_ort" ] || die "cannot read ORT_VERSION from mobile-core/src/runtime.rs"
ORT_VERSION="${ORT_VERSION:-$core_ort}"
if [ "$ORT_VERSION" != "$core_ort" ] && [ "${ORT_ALLOW_MISMATCH:-0}" != 1 ]; then
    die "ORT_VERSION=$ORT_VERSION but mobile-core is built for ONNX Runtime $core_ort (set ORT_ALLOW_MISMATCH=1 to try anyway)"
fi

# 1. libmobile_core.so per ABI, in folders named by ABI.
if [ "${SKIP_CARGO:-0}" != 1 ]; then
    command -v cargo-ndk >/dev/null || die "cargo-ndk not found: cargo install cargo-ndk"
    if [ -z "${ANDROID_NDK_HOME:-}" ] && [ ! -d "${ANDROID_HOME:-/nonexistent}/ndk" ]; then
        echo "build-native: ANDROID_NDK_HOME is not set; cargo-ndk will look in Android Studio's default SDK folder" >&2
    fi
    targets=()
    for abi in "${abis[@]}"; do targets+=(-t "$abi"); done
    (cd "$repo" && cargo ndk "${targets[@]}" -o "$jnilibs" build --release -p mobile-core)
fi

# 2. libonnxruntime.so per ABI, from the AAR's jni/<abi>/ (libonnxruntime4j_jni.so, the Java binding, is not
#    needed: mobile-core calls the C API).
cache="${FBNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fbnet}"
aar="${ORT_AAR:-$cache/onnxruntime-android-$ORT_VERSION.aar}"
if [ ! -f "$aar" ]; then
    url="https://repo1.maven.org/maven2/com/microsoft/onnxruntime/onnxruntime-android/$ORT_VERSION/onnxruntime-android-$ORT_VERSION.aar"
    mkdir -p "$(dirname "$aar")"
    echo "downloading $url" >&2
    if command -v curl >/dev/null; then
        curl -fL --retry 3 -o "$aar.part" "$url" || die "download failed: does onnxruntime-android $ORT_VERSION exist on Maven Central?"
    else
        wget -O "$aar.part" "$url" || die "download failed: does onnxruntime-android $ORT_VERSION exist on Maven Central?"
    fi
    mv "$aar.part" "$aar"
fi
if [ -n "${ORT_SHA256:-}" ]; then
    echo "$ORT_SHA256  $aar" | sha256sum -c - >/dev/null || die "$aar does not match ORT_SHA256"
fi

for abi in "${abis[@]}"; do
    mkdir -p "$jnilibs/$abi"
    unzip -o -j -q "$aar" "jni/$abi/libonnxruntime.so" -d "$jnilibs/$abi" \
        || die "$aar has no jni/$abi/libonnxruntime.so"
    # Should the library need the shared C++ runtime, the AAR ships it beside; take it along.
    if unzip -l "$aar" "jni/$abi/libc++_shared.so" >/dev/null 2>&1; then
        unzip -o -j -q "$aar" "jni/$abi/libc++_shared.so" -d "$jnilibs/$abi"
    fi
done

echo "jniLibs ready (ONNX Runtime $ORT_VERSION):" >&2
(cd "$jnilibs" && find . -name '*.so' -exec ls -l {} + | awk '{print "  " $5 "\t" $9}') >&2
