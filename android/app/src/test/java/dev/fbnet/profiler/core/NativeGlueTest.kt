package dev.fbnet.profiler.core

import dev.fbnet.core.FbnetException
import dev.fbnet.core.FbnetNative
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.BeforeClass
import org.junit.Test
import java.io.File
import java.nio.file.Files

/**
 * The JNI glue against the host build of libmobile_core (a call works, an error becomes an exception, a
 * callback arrives); mobile-core's logic is tested in Rust. Skipped unless the JVM finds libmobile_core
 * (-Djava.library.path=…/target/release) and ONNX Runtime loads from mobile-core's default places
 * (scripts/setup-ort.sh, or ORT_DYLIB_PATH). scripts/test-bridges.sh runs it that way. The tests
 * on a whole profile and a model also need FBNET_FIXTURES, the folder written by mobile-core's
 * `bridge_fixtures` example (a tiny space, a model of it, an image).
 */
class NativeGlueTest {
    companion object {
        private var available = false

        /** scripts/test-bridges.sh sets FBNET_REQUIRE_NATIVE=1: there, a library that does not load fails. */
        private fun skipOrFail(e: Throwable): Boolean {
            if (System.getenv("FBNET_REQUIRE_NATIVE") == "1") throw e
            System.err.println("NativeGlueTest skipped: ${e.message}")
            return false
        }

        @BeforeClass
        @JvmStatic
        fun load() {
            available = try {
                FbnetRuntime.init(null)
                true
            } catch (e: UnsatisfiedLinkError) {
                skipOrFail(e)
            } catch (e: FbnetException) {
                skipOrFail(e)
            }
        }
    }

    private fun fixture(name: String): File {
        val dir = System.getenv("FBNET_FIXTURES")
        assumeTrue("FBNET_FIXTURES names the bridge fixtures", available && dir != null)
        return File(dir!!, name)
    }

    @Test
    fun runtimeAndVersion() {
        assumeTrue(available)
        assertTrue(FbnetNative.coreVersion().isNotEmpty())
        assertTrue(FbnetRuntime.info!!.version.isNotEmpty())
        System.err.println("NativeGlueTest: mobile-core ${FbnetNative.coreVersion()}, ${FbnetRuntime.info}")
    }

    @Test
    fun errorsBecomeExceptionsWithAKind() {
        assumeTrue(available)
        val e = assertThrows(FbnetException::class.java) { ModelRepository().load("/nonexistent/model.onnx") }
        assertTrue(e.kind, e.kind in setOf("io", "invalid_input"))
        val bad = assertThrows(FbnetException::class.java) { ModelRepository().loadBytes(ByteArray(16), "junk.onnx") }
        assertTrue(bad.kind, bad.kind in setOf("io", "invalid_input", "other"))
    }

    @Test
    fun progressArrivesAndCancelKeepsThePartialTable() {
        assumeTrue(available)
        val dir = Files.createTempDirectory("fbnet-glue").toFile()
        val out = File(dir, Tables.fileName("fbnet-small", "jvm test", 1))
        val request = ProfileRequest(
            space = "fbnet-small", resolution = 28, inputChannels = 1, width = 0.25, dtypes = listOf("fp32"),
            quick = true, outPath = out.path, resume = false,
            device = DeviceMeta("jvm test", "", "host", 1, System.getProperty("os.name"), System.getProperty("os.arch")),
        )
        val repo = ProfilerRepository()
        var progress = 0
        repo.start(request) { s ->
            if (s is ProfileState.Running && s.total > 0) {
                progress++
                repo.cancel()
            }
        }
        val end = repo.awaitEnd(120_000)
        System.err.println("NativeGlueTest: $progress progress callback(s), then $end")
        assertTrue("at least one progress callback", progress >= 1)
        // A quick profile may finish its last step before the cancel lands.
        assertTrue("$end", end is ProfileState.Cancelled || end is ProfileState.Finished)
        assertEquals(false, repo.isRunning)
        dir.deleteRecursively()
    }

    @Test
    fun aWholeProfileFinishesAndResumes() {
        val space = fixture("space.json").readText()
        val dir = Files.createTempDirectory("fbnet-glue").toFile()
        val out = File(dir, "tiny.json")
        val request = ProfileRequest(space = space, quick = true, outPath = out.path, resume = false)
        val repo = ProfilerRepository()
        val states = java.util.Collections.synchronizedList(ArrayList<ProfileState>())
        repo.start(request) { states.add(it) }
        val end = repo.awaitEnd(120_000)
        assertTrue("$end", end is ProfileState.Finished)
        val result = (end as ProfileState.Finished).result
        assertEquals(out.path, result.path)
        assertTrue(result.entries > 0)
        assertTrue(out.isFile)
        val lastProgress = states.filterIsInstance<ProfileState.Running>().last()
        assertEquals(lastProgress.total, lastProgress.done)
        assertEquals(1, states.count { it.isTerminal })

        // Resuming a complete table measures nothing again and keeps its entries.
        repo.start(request.copy(resume = true)) {}
        val again = repo.awaitEnd(120_000)
        assertTrue("$again", again is ProfileState.Finished)
        assertEquals(result.entries, (again as ProfileState.Finished).result.entries)
        dir.deleteRecursively()
    }

    @Test
    fun aModelLoadsClassifiesAndBenches() {
        ModelRepository().use { models ->
            val info = models.load(fixture("model.onnx").path)
            assertTrue(info.labels.isNotEmpty())
            assertEquals("fp32", info.dtype)
            assertEquals(4, info.inputShape.size)

            val top = models.classify(fixture("image.png").readBytes(), topK = 3)
            assertEquals(minOf(3, info.labels.size), top.size)
            assertTrue(top.zipWithNext().all { (a, b) -> a.probability >= b.probability })

            val bench = models.bench(warmup = 1, runs = 5)
            assertEquals(5, bench.runs)
            assertTrue(bench.p10Us <= bench.p50Us && bench.p50Us <= bench.p90Us)

            val int8 = models.loadBytes(fixture("model.int8.onnx").readBytes(), "model.int8.onnx")
            assertEquals("int8", int8.dtype)
            val e = assertThrows(FbnetException::class.java) { models.classify(ByteArray(10), topK = 1) }
            assertEquals("invalid_input", e.kind)
        }
    }
}
