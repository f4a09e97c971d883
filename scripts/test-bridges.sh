#!/usr/bin/env bash
# The bridge tests: mobile-core's uniffi surface from Python and its JNI facade from a JVM, both against
# the host build of libmobile_core.so. Generates the Python and Swift bindings with the workspace's
# uniffi-bindgen (the iOS app's names are checked against the Swift ones, since Swift cannot be compiled
# here), writes fixtures with the `bridge_fixtures` example, fetches the Kotlin compiler from npm into
# fbnet's cache folder, then runs both suites. Called by
# scripts/test.sh; prints `test result:` lines like cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${FBNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fbnet}"
target="${CARGO_TARGET_DIR:-target}"
kotlin_version=2.4.20
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --locked -q -p mobile-core -p uniffi-bindgen
lib="$target/debug/libmobile_core.so"
cargo run --locked -q -p mobile-core --example bridge_fixtures -- "$work/fixtures" >/dev/null
bindgen="$target/debug/uniffi-bindgen"
"$bindgen" generate --library "$lib" --language python --out-dir "$work/python" >/dev/null
"$bindgen" generate --library "$lib" --language swift --out-dir "$work/swift" >/dev/null
test -s "$work/swift/mobile_core.swift" || { echo "no Swift bindings were generated" >&2; exit 1; }
# Swift cannot be compiled here: check the app's names against the generated ones
python3 scripts/check-swift-names.py "$work/swift/mobile_core.swift" ios/FbnetProfiler
cp "$lib" "$work/python/"

echo "uniffi from Python:"
FBNET_FIXTURES="$work/fixtures" PYTHONPATH="$work/python" \
    python3 mobile-core/tests/bridges/test_uniffi.py

kotlin="$cache/kotlin-compiler-$kotlin_version/node_modules/kotlin-compiler"
if [ ! -x "$kotlin/bin/kotlinc" ]; then
    npm install --silent --no-audit --no-fund --prefix "$cache/kotlin-compiler-$kotlin_version" \
        "kotlin-compiler@$kotlin_version" >/dev/null
fi
scripts/apt-install.sh junit4
junit=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
stdlib="$kotlin/lib/kotlin-stdlib.jar"
main=android/app/src/main/java
# the app's Android-free Kotlin: the facade declarations and the repository layer
"$kotlin/bin/kotlinc" -nowarn "$main/dev/fbnet/core/FbnetNative.kt" "$main"/dev/fbnet/profiler/core/*.kt \
    -d "$work/core.jar"
export FBNET_FIXTURES="$work/fixtures" FBNET_REQUIRE_NATIVE=1

echo "JNI facade from a JVM (Kotlin $kotlin_version):"
"$kotlin/bin/kotlinc" -nowarn -cp "$work/core.jar" mobile-core/tests/bridges/FacadeTest.kt \
    -d "$work/facade-test.jar"
java -Djava.library.path="$target/debug" -cp "$work/core.jar:$work/facade-test.jar:$stdlib" \
    dev.fbnet.bridgetest.FacadeTestKt

echo "the app's Kotlin layer (JUnit):"
tests=android/app/src/test/java/dev/fbnet/profiler/core
"$kotlin/bin/kotlinc" -nowarn -cp "$work/core.jar:$junit" "$tests"/*.kt -d "$work/app-test.jar"
classes=()
for f in "$tests"/*Test.kt; do classes+=("dev.fbnet.profiler.core.$(basename "$f" .kt)"); done
status=0
java -Djava.library.path="$target/debug" -cp "$work/core.jar:$work/app-test.jar:$stdlib:$junit" \
    org.junit.runner.JUnitCore "${classes[@]}" >"$work/junit.log" 2>&1 || status=$?
cat "$work/junit.log"
# JUnit's summary as a line like cargo's, which scripts/test.sh counts
if grep -q '^OK (' "$work/junit.log"; then
    n=$(sed -n 's/^OK (\([0-9]*\) tests*)/\1/p' "$work/junit.log")
    echo "test result: ok. $n passed; 0 failed"
else
    run=$(sed -n 's/^Tests run: *\([0-9]*\), *Failures: *\([0-9]*\).*/\1 \2/p' "$work/junit.log")
    set -- $run
    echo "test result: FAILED. $(( ${1:-0} - ${2:-0} )) passed; ${2:-1} failed"
fi
exit $status
