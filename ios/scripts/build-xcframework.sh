#!/usr/bin/env bash
# Builds mobile-core for iOS and the simulator, generates its Swift bindings with uniffi-bindgen, and
# packs the static libraries and the C header into ios/Frameworks/MobileCore.xcframework.
#
# Runs on a Mac with Xcode (xcodebuild) and rustup. Outputs (not committed):
#   ios/Generated/mobile_core.swift                   compiled into the app
#   ios/Generated/mobile_coreFFI.h, .modulemap         the C side, also inside the xcframework
#   ios/Frameworks/MobileCore.xcframework
#
# Environment: IPHONEOS_DEPLOYMENT_TARGET (default 16.0, the app's), SIM_TARGETS (default
# "aarch64-apple-ios-sim"; add x86_64-apple-ios for an Intel Mac's simulator).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ios="$(dirname "$here")"
repo="$(dirname "$ios")"
export IPHONEOS_DEPLOYMENT_TARGET="${IPHONEOS_DEPLOYMENT_TARGET:-16.0}"
read -r -a sim_targets <<< "${SIM_TARGETS:-aarch64-apple-ios-sim}"
device_target=aarch64-apple-ios

command -v xcodebuild >/dev/null || { echo "xcodebuild not found: this needs a Mac with Xcode" >&2; exit 1; }

cd "$repo"
rustup target add "$device_target" "${sim_targets[@]}"
for t in "$device_target" "${sim_targets[@]}"; do
    cargo build --release -p mobile-core --target "$t"
done

# Swift bindings, read from the built library (uniffi's library mode).
rm -rf "$ios/Generated"
cargo run -p uniffi-bindgen -- generate \
    --library "target/$device_target/release/libmobile_core.a" \
    --language swift --out-dir "$ios/Generated"

# Headers of the xcframework: in a folder named after the module, so that its module.modulemap does not
# collide with another library's in the app's include folder.
headers="$ios/build/headers"
rm -rf "$headers"
mkdir -p "$headers/mobile_coreFFI"
cp "$ios/Generated/mobile_coreFFI.h" "$headers/mobile_coreFFI/"
cp "$ios/Generated/mobile_coreFFI.modulemap" "$headers/mobile_coreFFI/module.modulemap"

# One library per platform: the simulator slices are merged with lipo when there are several.
sim_lib="target/${sim_targets[0]}/release/libmobile_core.a"
if [ "${#sim_targets[@]}" -gt 1 ]; then
    mkdir -p "$ios/build/sim"
    sim_lib="$ios/build/sim/libmobile_core.a"
    libs=()
    for t in "${sim_targets[@]}"; do libs+=("target/$t/release/libmobile_core.a"); done
    lipo -create "${libs[@]}" -output "$sim_lib"
fi

rm -rf "$ios/Frameworks/MobileCore.xcframework"
mkdir -p "$ios/Frameworks"
xcodebuild -create-xcframework \
    -library "target/$device_target/release/libmobile_core.a" -headers "$headers" \
    -library "$sim_lib" -headers "$headers" \
    -output "$ios/Frameworks/MobileCore.xcframework"

echo "ios/Frameworks/MobileCore.xcframework and ios/Generated/mobile_core.swift are ready." >&2
echo "Next: cd ios && xcodegen generate && pod install && open FbnetProfiler.xcworkspace" >&2
