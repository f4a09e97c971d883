package dev.fbnet.profiler.core

import dev.fbnet.core.FbnetException
import dev.fbnet.core.ProfileListener
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import java.util.Collections
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread

/** The state machines over fake backends: the glue to the real library is covered by NativeGlueTest. */
class RepositoryTest {
    /**
     * Reports two steps from a worker thread, then ends as [end] says unless cancelled first. With a [gate]
     * the worker waits after the first step until the gate opens (a cancel opens it).
     */
    private class FakeProfiles(val end: () -> String, val gate: CountDownLatch? = null) : ProfileBackend {
        val released = Collections.synchronizedList(ArrayList<Long>())
        @Volatile var cancelled = false
        private var outcome: Result<String>? = null
        private val done = CountDownLatch(1)

        override fun start(requestJson: String, listener: ProfileListener): Long {
            Json.parseObject(requestJson) // the request is valid JSON
            thread {
                listener.onProgress(1, 2, "k3_e6 fp32", Double.NaN)
                gate?.await(5, TimeUnit.SECONDS)
                listener.onProgress(2, 2, "skip fp32", 0.5)
                outcome = if (cancelled) {
                    Result.failure(FbnetException("cancelled: stopped"))
                } else {
                    runCatching(end)
                }
                outcome!!.fold({ listener.onFinished(it) }, { e ->
                    val k = (e as? FbnetException)?.kind ?: "other"
                    listener.onError(k, e.message ?: "")
                })
                done.countDown()
            }
            return 7
        }

        override fun cancel(handle: Long) {
            cancelled = true
            gate?.countDown()
        }

        override fun await(handle: Long): String {
            done.await()
            return outcome!!.getOrThrow()
        }

        override fun release(handle: Long) {
            released.add(handle)
        }
    }

    private val request = ProfileRequest(outPath = "/tmp/t.json")

    private fun collect(repo: ProfilerRepository, backendRequest: ProfileRequest = request): List<ProfileState> {
        val states = Collections.synchronizedList(ArrayList<ProfileState>())
        repo.start(backendRequest) { states.add(it) }
        repo.awaitEnd(5_000)
        return states.toList()
    }

    @Test
    fun aProfileRunsToOneFinishedState() {
        val backend = FakeProfiles({ """{"lut_json": "{}", "path": "/tmp/t.json", "entries": 42, "noisy": 1, "seconds": 3.5}""" })
        val repo = ProfilerRepository(backend)
        val states = collect(repo)
        assertEquals(ProfileState.Running(0, 0, "starting", null), states.first())
        assertTrue(ProfileState.Running(1, 2, "k3_e6 fp32", null) in states)
        assertTrue(ProfileState.Running(2, 2, "skip fp32", 0.5) in states)
        assertEquals(1, states.count { it.isTerminal })
        assertEquals(ProfileState.Finished(ProfileResult("/tmp/t.json", 42, 1, 3.5)), states.last())
        assertEquals(listOf(7L), backend.released)
        assertEquals(false, repo.isRunning)
    }

    @Test
    fun cancelEndsInCancelledWithThePartialTable() {
        val gate = CountDownLatch(1)
        val backend = FakeProfiles({ error("not reached") }, gate)
        val repo = ProfilerRepository(backend)
        val states = Collections.synchronizedList(ArrayList<ProfileState>())
        repo.start(request) { s ->
            states.add(s)
            // The first step may report before start() has the handle: the cancel must still land
            // (the fake's worker waits until it reaches the backend).
            if (s is ProfileState.Running && s.done == 1L) repo.cancel()
        }
        assertEquals(ProfileState.Cancelled("/tmp/t.json"), repo.awaitEnd(5_000))
        assertEquals(1, states.count { it.isTerminal })
        assertEquals(listOf(7L), backend.released)
    }

    @Test
    fun errorsKeepTheirKind() {
        val backend = FakeProfiles({ throw FbnetException("runtime_unavailable: no libonnxruntime.so") })
        val end = collect(ProfilerRepository(backend)).last()
        assertEquals(ProfileState.Failed("runtime_unavailable", "no libonnxruntime.so"), end)
    }

    @Test
    fun aSecondProfileWaitsForTheFirst() {
        val gate = CountDownLatch(1)
        val repo = ProfilerRepository(FakeProfiles({ """{"path": "/p", "entries": 1}""" }, gate))
        repo.start(request) {}
        assertThrows(IllegalStateException::class.java) { repo.start(request) {} }
        gate.countDown()
        assertTrue(repo.awaitEnd(5_000) is ProfileState.Finished)
        // and may start again once it has ended
        val again = collect(ProfilerRepository(FakeProfiles({ """{"path": "/p", "entries": 1}""" })))
        assertTrue(again.last() is ProfileState.Finished)
    }

    @Test
    fun aRefusedStartFails() {
        val backend = object : ProfileBackend {
            override fun start(requestJson: String, listener: ProfileListener): Long =
                throw FbnetException("invalid_input: unknown space")
            override fun cancel(handle: Long) = error("no handle")
            override fun await(handle: Long) = error("no handle")
            override fun release(handle: Long) = error("no handle")
        }
        val repo = ProfilerRepository(backend)
        assertEquals(ProfileState.Failed("invalid_input", "unknown space"), collect(repo).last())
        assertEquals(ProfileState.Failed("invalid_input", "unknown space"), repo.state)
    }

    private class FakeModels : ModelBackend {
        val open = mutableSetOf<Long>()
        var next = 1L
        var info = INFO

        override fun load(path: String, threads: Int): Long {
            if (!path.endsWith(".onnx")) throw FbnetException("io: $path: not found")
            return next++.also { open.add(it) }
        }
        override fun loadBytes(bytes: ByteArray, name: String, threads: Int) = load(name, threads)
        override fun info(handle: Long) = info
        override fun classify(handle: Long, image: ByteArray, topK: Int) =
            """[{"index": 3, "label": "dress", "probability": 0.9}, {"index": 0, "label": "t-shirt", "probability": 0.05}]"""
        override fun bench(handle: Long, warmup: Int, runs: Int, lutPath: String?) = BENCH
        override fun close(handle: Long) {
            assertTrue(open.remove(handle))
        }
    }

    @Test
    fun modelsParseAndOnlyOneStaysOpen() {
        val backend = FakeModels()
        val repo = ModelRepository(backend)
        assertThrows(IllegalStateException::class.java) { repo.classify(ByteArray(0)) }
        val info = repo.load("a.onnx")
        assertEquals("fbnet-b", info.name)
        assertEquals("int8", info.dtype)
        assertEquals(10, info.labels.size)
        assertEquals(listOf(1, 1, 28, 28), info.inputShape)
        assertEquals(0.874, info.accuracy!!, 1e-9)
        assertEquals(812.5, info.predictedUs!!, 0.0)
        assertEquals(mapOf("fp32" to 1400.0, "int8" to 812.5), info.prediction!!.latencyUs)

        repo.loadBytes(ByteArray(4), "b.onnx")
        assertEquals(setOf(2L), backend.open)
        assertThrows(FbnetException::class.java) { repo.load("missing.txt") }
        assertEquals(setOf(2L), backend.open) // a failed load keeps the model

        backend.info = "not json"
        assertThrows(JsonException::class.java) { repo.load("c.onnx") }
        assertEquals(setOf(2L), backend.open) // an unreadable description frees the new handle

        assertEquals(listOf(ClassScore(3, "dress", 0.9f), ClassScore(0, "t-shirt", 0.05f)), repo.classify(ByteArray(0)))
        val b = repo.bench()
        assertEquals(905.0, b.trimmedMeanUs, 0.0)
        assertEquals(1.114, b.measuredOverPredicted!!, 0.0)
        assertEquals("model's table (Pixel 8)", b.predictedBy)

        repo.close()
        assertTrue(backend.open.isEmpty())
        assertNull(repo.info)
    }

    @Test
    fun aBenchWithoutPredictionParses() {
        val b = BenchResult.parse(BENCH.replace(""""predicted_us": 812.5""", """"predicted_us": null"""))
        assertNull(b.predictedUs)
        assertNull(b.speedNow) // no speed reference timed
    }

    @Test
    fun aBenchAtTheDevicesPaceNowParses() {
        val b = BenchResult.parse(BENCH.replace("}", """, "speed_now": 1.25, "predicted_now_us": 1015.6}"""))
        assertEquals(1.25, b.speedNow!!, 0.0)
        assertEquals(1015.6, b.predictedNowUs!!, 0.0)
    }

    private companion object {
        val INFO = """{"format": 1, "name": "fbnet-b", "arch": "k3_e6 | skip", "space": "fbnet-small",
            "space_hash": "ab12", "dtype": "int8", "labels": ["t-shirt","trouser","pullover","dress","coat",
            "sandal","shirt","sneaker","bag","boot"], "input_shape": [1, 1, 28, 28], "mean": [0.286],
            "std": [0.353], "dataset": "fashion-mnist", "accuracy": 0.874,
            "prediction": {"lut": "small.json", "device": "Pixel 8", "threads": 1,
                           "latency_us": [["fp32", 1400.0], ["int8", 812.5]]}}"""
        val BENCH = """{"model": "fbnet-b", "dtype": "int8", "threads": 1, "runtime": "1.31.1", "warmup": 10,
            "runs": 50, "mean_us": 910.0, "trimmed_mean_us": 905.0, "min_us": 850.0, "p10_us": 870.0,
            "p50_us": 900.0, "p90_us": 960.0, "predicted_us": 812.5, "predicted_by": "model's table (Pixel 8)",
            "measured_over_predicted": 1.114}"""
    }
}
