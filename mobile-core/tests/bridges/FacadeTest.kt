// The JNI facade (dev.fbnet.core.FbnetNative, the Android app's bridge) from a real JVM against the host
// build of libmobile_core: run by scripts/test-bridges.sh with -Djava.library.path naming the library's
// folder and FBNET_FIXTURES naming the output of mobile-core's `bridge_fixtures` example.
package dev.fbnet.bridgetest

import dev.fbnet.core.FbnetException
import dev.fbnet.core.FbnetNative
import dev.fbnet.core.ProfileListener
import java.io.File
import java.nio.file.Files
import java.util.Collections
import java.util.concurrent.atomic.AtomicLong

private val fixtures = File(System.getenv("FBNET_FIXTURES") ?: error("FBNET_FIXTURES is not set"))
private var passed = 0
private val failures = mutableListOf<String>()

private fun test(name: String, body: () -> Unit) {
    try {
        body()
        passed++
        println("test $name ... ok")
    } catch (t: Throwable) {
        failures += "$name: $t"
        println("test $name ... FAILED: $t")
    }
}

private fun check(cond: Boolean, what: () -> String) {
    if (!cond) throw AssertionError(what())
}

private inline fun <reified T : Throwable> expectThrows(body: () -> Unit): T {
    try {
        body()
    } catch (t: Throwable) {
        if (t is T) return t
        throw AssertionError("expected ${T::class.simpleName}, got $t")
    }
    throw AssertionError("expected ${T::class.simpleName}, nothing was thrown")
}

/** A number field of a flat JSON object. */
private fun number(json: String, key: String): Double =
    Regex("\"$key\":(-?[0-9.eE+-]+)").find(json)?.groupValues?.get(1)?.toDouble()
        ?: throw AssertionError("no number \"$key\" in $json")

private fun request(out: File, resume: Boolean = false, space: String? = null): String {
    val spaceJson = space ?: fixtures.resolve("space.json").readText()
    val quoted = if (space == null) spaceJson.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ") else space
    return """{"space":"$quoted","dtypes":["fp32","int8"],"threads":1,"quick":true,""" +
        """"device":{"model":"JVM Test Phone","soc":"Test SoC"},"out_path":"${out.path}","resume":$resume}"""
}

/** Records events and the threads they come from; cancels through [cancel] when asked to. */
private class Recorder(val cancelAfter: Int? = null, val throwOnProgress: Boolean = false) : ProfileListener {
    val progress = Collections.synchronizedList(mutableListOf<LongArray>())
    val threads = Collections.synchronizedSet(mutableSetOf<String>())
    val finished = Collections.synchronizedList(mutableListOf<String>())
    val errors = Collections.synchronizedList(mutableListOf<Pair<String, String>>())
    val handle = AtomicLong(0)

    override fun onProgress(done: Long, total: Long, step: String, etaSeconds: Double) {
        progress += longArrayOf(done, total)
        threads += Thread.currentThread().name
        check(step.isNotEmpty()) { "empty step" }
        if (cancelAfter != null && progress.size >= cancelAfter && handle.get() != 0L) {
            FbnetNative.cancelProfile(handle.get())
        }
        if (throwOnProgress) throw IllegalStateException("a broken progress display")
    }

    override fun onFinished(resultJson: String) {
        finished += resultJson
    }

    override fun onError(kind: String, message: String) {
        errors += kind to message
    }
}

fun main() {
    FbnetNative.loadLibrary()
    val tmp = Files.createTempDirectory("fbnet-jvm").toFile()

    test("runtime loads and reports its version") {
        val info = FbnetNative.initRuntime(null)
        check(info.contains("\"version\":\"1.31.1\"")) { info }
        check(FbnetNative.coreVersion().matches(Regex("\\d+\\.\\d+\\.\\d+.*"))) { FbnetNative.coreVersion() }
    }

    var table: File? = null
    test("a quick profile produces a valid table, with progress in order from the worker thread") {
        val out = tmp.resolve("lut.json")
        val rec = Recorder()
        val handle = FbnetNative.startProfile(request(out), rec)
        val result = FbnetNative.awaitProfile(handle)
        FbnetNative.releaseProfile(handle)
        check(out.exists()) { "no table at $out" }
        val lut = out.readText()
        check(lut.contains("\"model\": \"JVM Test Phone\"") || lut.contains("\"model\":\"JVM Test Phone\"")) { "device model missing" }
        val entries = number(result, "entries").toLong()
        check(entries > 0) { result }
        val done = rec.progress.map { it[0] }
        check(done.isNotEmpty() && done == done.sorted()) { "progress out of order: $done" }
        check(rec.progress.last()[0] == rec.progress.last()[1]) { "last progress ${rec.progress.last().toList()}" }
        check(rec.finished.size == 1 && rec.errors.isEmpty()) { "finished ${rec.finished.size}, errors ${rec.errors}" }
        check(Thread.currentThread().name !in rec.threads) { "callbacks on the caller's thread" }
        check(rec.threads == setOf("fbnet-profile")) { "callback threads ${rec.threads}" }
        table = out
    }

    test("cancel stops the profile, keeps the partial table, and resume finishes it") {
        val out = tmp.resolve("cancelled.json")
        val rec = Recorder(cancelAfter = 1)
        val handle = FbnetNative.startProfile(request(out), rec)
        rec.handle.set(handle)
        val e = expectThrows<FbnetException> { FbnetNative.awaitProfile(handle) }
        FbnetNative.releaseProfile(handle)
        check(e.kind == "cancelled") { "kind ${e.kind}: ${e.message}" }
        check(rec.errors.map { it.first } == listOf("cancelled")) { "onError ${rec.errors}" }
        check(out.exists()) { "the partial table is gone" }
        val planned = rec.progress.first()[1]
        val again = Recorder()
        val h2 = FbnetNative.startProfile(request(out, resume = true), again)
        val result = FbnetNative.awaitProfile(h2)
        FbnetNative.releaseProfile(h2)
        check(again.progress.last()[1] < planned) { "resume planned ${again.progress.last()[1]} of $planned" }
        check(number(result, "entries") > 0) { result }
    }

    test("a listener that throws does not break the profile") {
        val rec = Recorder(throwOnProgress = true)
        val handle = FbnetNative.startProfile(request(tmp.resolve("throwing.json")), rec)
        FbnetNative.awaitProfile(handle)
        FbnetNative.releaseProfile(handle)
        check(rec.finished.size == 1) { "not finished" }
    }

    test("bad requests become FbnetException of kind invalid_input") {
        for (bad in listOf(
            "{not json",
            request(tmp.resolve("x.json"), space = "no-such-space"),
            request(tmp.resolve("x.json")).replace("\"threads\":1", "\"threads\":0"),
        )) {
            val e = expectThrows<FbnetException> { FbnetNative.startProfile(bad, Recorder()) }
            check(e.kind == "invalid_input") { "kind ${e.kind}: ${e.message}" }
        }
        val e = expectThrows<FbnetException> { FbnetNative.awaitProfile(987654321L) }
        check(e.kind == "invalid_input" && e.message!!.contains("987654321")) { e.message!! }
    }

    test("a model loads, describes itself, classifies an image and benchmarks against a table") {
        val image = fixtures.resolve("image.png").readBytes()
        for (name in listOf("model.onnx", "model.int8.onnx")) {
            val h = FbnetNative.loadModel(fixtures.resolve(name).path, 1)
            val info = FbnetNative.modelInfo(h)
            check(info.contains("\"labels\":[\"ant\",\"bee\",\"cat\",\"dog\"]")) { info }
            val classes = FbnetNative.classify(h, image, 3)
            val probs = Regex("\"probability\":([0-9.eE+-]+)").findAll(classes).map { it.groupValues[1].toDouble() }.toList()
            check(probs.size == 3 && probs == probs.sortedDescending() && probs.all { it in 0.0..1.0 }) { classes }
            val bench = FbnetNative.bench(h, 2, 10, table?.path)
            check(number(bench, "runs") == 10.0) { bench }
            check(number(bench, "p10_us") <= number(bench, "p90_us")) { bench }
            check(number(bench, "predicted_us") > 0 && number(bench, "measured_over_predicted") > 0) { bench }
            FbnetNative.closeModel(h)
            val closed = expectThrows<FbnetException> { FbnetNative.modelInfo(h) }
            check(closed.kind == "invalid_input") { closed.message!! }
        }
        val fromBytes = FbnetNative.loadModelBytes(fixtures.resolve("model.onnx").readBytes(), "picked.onnx", 1)
        check(FbnetNative.modelInfo(fromBytes).contains("bridge-tiny")) { "bytes" }
        FbnetNative.closeModel(fromBytes)
    }

    test("bad models and images become exceptions that name them") {
        val missing = expectThrows<FbnetException> { FbnetNative.loadModel(tmp.resolve("missing.onnx").path, 1) }
        check(missing.message!!.contains("missing.onnx")) { missing.message!! }
        val text = tmp.resolve("notes.onnx").apply { writeText("not a model") }
        val notOnnx = expectThrows<FbnetException> { FbnetNative.loadModel(text.path, 1) }
        check(notOnnx.kind == "invalid_input" && notOnnx.message!!.contains("notes.onnx")) { notOnnx.message!! }
        val garbage = expectThrows<FbnetException> { FbnetNative.loadModelBytes(byteArrayOf(1, 2, 3), "garbage.onnx", 1) }
        check(garbage.message!!.contains("garbage.onnx")) { garbage.message!! }
        val h = FbnetNative.loadModel(fixtures.resolve("model.onnx").path, 1)
        val badImage = expectThrows<FbnetException> { FbnetNative.classify(h, "not an image".toByteArray(), 3) }
        check(badImage.kind == "invalid_input") { badImage.message!! }
        val noRuns = expectThrows<FbnetException> { FbnetNative.bench(h, 1, 0, null) }
        check(noRuns.kind == "invalid_input") { noRuns.message!! }
        val tooMany = expectThrows<FbnetException> { FbnetNative.bench(h, 1, 1_000_000, null) }
        check(tooMany.kind == "invalid_input") { tooMany.message!! }
        // a long benchmark stops when another thread cancels it
        var outcome: Throwable? = null
        val worker = Thread { outcome = runCatching { FbnetNative.bench(h, 0, 100_000, null) }.exceptionOrNull() }
        worker.start()
        Thread.sleep(200)
        FbnetNative.cancelBench(h)
        worker.join(10_000)
        check(!worker.isAlive) { "the benchmark did not stop" }
        val cancelled = outcome as? FbnetException
        check(cancelled?.kind == "cancelled") { "expected cancelled, got $outcome" }
        FbnetNative.closeModel(h)
    }

    tmp.deleteRecursively()
    // a line like cargo's, which scripts/test.sh counts
    println("test result: ${if (failures.isEmpty()) "ok" else "FAILED"}. $passed passed; ${failures.size} failed")
    if (failures.isNotEmpty()) {
        failures.forEach { System.err.println("FAILED $it") }
        kotlin.system.exitProcess(1)
    }
}
