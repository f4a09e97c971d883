// One loaded exported model (fbnet export) at a time, through mobile-core: its description, classification
// of an image and a latency benchmark against the table's prediction, parsed into data classes. Calls block
// (loading and benchmarking take seconds): make them off the UI thread.
package dev.fbnet.profiler.core

import dev.fbnet.core.FbnetNative

/** The model half of the JNI facade, behind an interface so that the parsing can be tested alone. */
interface ModelBackend {
    fun load(path: String, threads: Int): Long
    fun loadBytes(bytes: ByteArray, name: String, threads: Int): Long
    fun info(handle: Long): String
    fun classify(handle: Long, image: ByteArray, topK: Int): String
    fun bench(handle: Long, warmup: Int, runs: Int, lutPath: String?): String
    fun close(handle: Long)
}

/** [ModelBackend] over libmobile_core. */
object NativeModelBackend : ModelBackend {
    override fun load(path: String, threads: Int) = FbnetNative.loadModel(path, threads)
    override fun loadBytes(bytes: ByteArray, name: String, threads: Int) = FbnetNative.loadModelBytes(bytes, name, threads)
    override fun info(handle: Long) = FbnetNative.modelInfo(handle)
    override fun classify(handle: Long, image: ByteArray, topK: Int) = FbnetNative.classify(handle, image, topK)
    override fun bench(handle: Long, warmup: Int, runs: Int, lutPath: String?) =
        FbnetNative.bench(handle, warmup, runs, lutPath)
    override fun close(handle: Long) = FbnetNative.closeModel(handle)
}

/** The table a model was searched with and the latency it predicted per dtype (µs). */
data class ModelPrediction(val lut: String, val device: String, val threads: Int, val latencyUs: Map<String, Double>)

/** A model's description (the `fbnet` metadata that export writes into the ONNX file). */
data class ModelInfo(
    val name: String,
    val arch: String,
    val space: String,
    val spaceHash: String,
    val dtype: String,
    val labels: List<String>,
    val inputShape: List<Int>,
    val dataset: String,
    /** Top-1 accuracy (0–1) the host measured on the test split, when known. */
    val accuracy: Double?,
    val prediction: ModelPrediction?,
    /** The JSON as received, for fields this class does not name. */
    val json: String,
) {
    /** The prediction for this model's own dtype. */
    val predictedUs: Double? get() = prediction?.latencyUs?.get(dtype)

    companion object {
        fun parse(json: String): ModelInfo {
            val o = Json.parseObject(json)
            return ModelInfo(
                name = o.stringOrNull("name") ?: "",
                arch = o.stringOrNull("arch") ?: "",
                space = o.stringOrNull("space") ?: "",
                spaceHash = o.stringOrNull("space_hash") ?: "",
                dtype = o.stringOrNull("dtype") ?: "",
                labels = o.arrOrNull("labels")?.map { it.asString("labels") } ?: emptyList(),
                inputShape = o.arrOrNull("input_shape")?.map { it.asLong("input_shape").toInt() } ?: emptyList(),
                dataset = o.stringOrNull("dataset") ?: "",
                accuracy = o.doubleOrNull("accuracy"),
                prediction = o.objOrNull("prediction")?.let(::parsePrediction),
                json = json,
            )
        }

        // latency_us is written as [["fp32", 1234.5], …] (a list of pairs); an object {"fp32": …} reads too.
        private fun parsePrediction(p: Json.Obj): ModelPrediction {
            val latency = LinkedHashMap<String, Double>()
            when (val l = p.opt("latency_us")) {
                is Json.Arr -> for (pair in l.items) {
                    val items = (pair as? Json.Arr)?.items
                    if (items == null || items.size != 2) throw JsonException("latency_us holds [dtype, µs] pairs")
                    latency[items[0].asString("dtype")] = items[1].asDouble("latency_us")
                }
                is Json.Obj -> for ((k, v) in l.fields) latency[k] = v.asDouble("latency_us")
                null -> {}
                else -> throw JsonException("\"latency_us\" is neither a list nor an object")
            }
            return ModelPrediction(
                lut = p.stringOrNull("lut") ?: "",
                device = p.stringOrNull("device") ?: "",
                threads = p.intOrNull("threads") ?: 0,
                latencyUs = latency,
            )
        }
    }
}

/** One class of a classification, best first. */
data class ClassScore(val index: Int, val label: String, val probability: Float) {
    companion object {
        fun parseList(json: String): List<ClassScore> = Json.parseArray(json).map {
            val o = it.asObj("class")
            ClassScore(o.int("index"), o.stringOrNull("label") ?: "", o.double("probability").toFloat())
        }
    }
}

/** A benchmark of single-image runs (µs) beside the table's prediction (mobile-core's BenchReport). */
data class BenchResult(
    val model: String,
    val dtype: String,
    val threads: Int,
    val runtime: String,
    val warmup: Int,
    val runs: Int,
    val meanUs: Double,
    /** Mean between the 10th and 90th percentiles: the statistic tables hold, so the one to compare. */
    val trimmedMeanUs: Double,
    val minUs: Double,
    val p10Us: Double,
    val p50Us: Double,
    val p90Us: Double,
    val predictedUs: Double?,
    val predictedBy: String?,
    /** Above 1: this phone runs the model slower than the table predicts. */
    val measuredOverPredicted: Double?,
    /** How much longer the phone takes now than when the table was made (its speed reference). */
    val speedNow: Double?,
    /** The prediction at that pace. */
    val predictedNowUs: Double?,
) {
    companion object {
        fun parse(json: String): BenchResult {
            val o = Json.parseObject(json)
            return BenchResult(
                model = o.stringOrNull("model") ?: "",
                dtype = o.stringOrNull("dtype") ?: "",
                threads = o.intOrNull("threads") ?: 0,
                runtime = o.stringOrNull("runtime") ?: "",
                warmup = o.intOrNull("warmup") ?: 0,
                runs = o.intOrNull("runs") ?: 0,
                meanUs = o.double("mean_us"),
                trimmedMeanUs = o.double("trimmed_mean_us"),
                minUs = o.double("min_us"),
                p10Us = o.double("p10_us"),
                p50Us = o.double("p50_us"),
                p90Us = o.double("p90_us"),
                predictedUs = o.doubleOrNull("predicted_us"),
                predictedBy = o.stringOrNull("predicted_by"),
                measuredOverPredicted = o.doubleOrNull("measured_over_predicted"),
                speedNow = o.doubleOrNull("speed_now"),
                predictedNowUs = o.doubleOrNull("predicted_now_us"),
            )
        }
    }
}

/** Holds at most one model; loading another frees the previous one. Methods are serialised. */
class ModelRepository(private val backend: ModelBackend = NativeModelBackend) : AutoCloseable {
    private var handle: Long? = null

    /** The loaded model's description, null before the first load. */
    @Volatile
    var info: ModelInfo? = null
        private set

    /** Loads an exported model from a file; throws FbnetException (the previous model stays loaded then). */
    @Synchronized
    fun load(path: String, threads: Int = 1): ModelInfo = replace(backend.load(path, threads))

    /** Loads an exported model from its bytes (a document picker's stream); [name] appears in errors. */
    @Synchronized
    fun loadBytes(bytes: ByteArray, name: String, threads: Int = 1): ModelInfo =
        replace(backend.loadBytes(bytes, name, threads))

    /** The [topK] most likely classes of a PNG or JPEG image. */
    @Synchronized
    fun classify(image: ByteArray, topK: Int = 5): List<ClassScore> =
        ClassScore.parseList(backend.classify(loaded(), image, topK))

    /** Times [runs] runs after [warmup]; [lutPath] predicts with that table instead of the model's own. */
    @Synchronized
    fun bench(warmup: Int = 10, runs: Int = 50, lutPath: String? = null): BenchResult =
        BenchResult.parse(backend.bench(loaded(), warmup, runs, lutPath))

    @Synchronized
    override fun close() {
        handle?.let(backend::close)
        handle = null
        info = null
    }

    private fun loaded(): Long = handle ?: throw IllegalStateException("no model loaded")

    private fun replace(newHandle: Long): ModelInfo {
        val newInfo = try {
            ModelInfo.parse(backend.info(newHandle))
        } catch (e: Exception) {
            backend.close(newHandle)
            throw e
        }
        handle?.let(backend::close)
        handle = newHandle
        info = newInfo
        return newInfo
    }
}
