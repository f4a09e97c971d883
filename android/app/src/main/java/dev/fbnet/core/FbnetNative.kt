// The JNI facade over mobile-core (libmobile_core.so): strings and JSON across the boundary, handles for
// long-lived native objects. Pure Kotlin/JVM (no Android API), so the same file is compiled and tested on a
// desktop JVM against the host build of the library. Every native call either returns or throws
// FbnetException; no Rust panic reaches the JVM.
package dev.fbnet.core

/** An error from mobile-core. [kind] is one of: invalid_input, runtime_unavailable, cancelled, io, other. */
class FbnetException(message: String) : Exception(message) {
    val kind: String = message.substringBefore(':', "other")
}

/** Receives a running profile's events on the profiling thread (not the UI thread). */
interface ProfileListener {
    /** After every measured step: steps done and planned, the step just measured, seconds left (estimate). */
    fun onProgress(done: Long, total: Long, step: String, etaSeconds: Double)

    /** Once, at the end: the result JSON ({"lut_json", "path", "entries", "noisy", "seconds"}). */
    fun onFinished(resultJson: String)

    /** Once, instead of onFinished: what went wrong (kind as in [FbnetException]). */
    fun onError(kind: String, message: String)
}

object FbnetNative {
    /** Loads libmobile_core (call once; the app's native library folder must hold it). */
    fun loadLibrary() = System.loadLibrary("mobile_core")

    /**
     * Loads ONNX Runtime from [libraryPath] (Android: "${applicationInfo.nativeLibraryDir}/libonnxruntime.so"),
     * or from mobile-core's default places when null. Returns {"version", "library"} as JSON.
     */
    @JvmStatic external fun initRuntime(libraryPath: String?): String

    /** mobile-core's version. */
    @JvmStatic external fun coreVersion(): String

    /**
     * Starts profiling on a native worker thread and returns its handle. [requestJson]:
     * {"space": "fbnet-224" | space JSON, "resolution": 224?, "width": 1.0?, "classes": 1000?,
     *  "input_channels": 3?, "dtypes": ["fp32","int8"], "threads": 1, "quick": false,
     *  "device": {"model","soc","cpu","cores","os","abi"}?, "out_path": "/…/lut.json", "resume": true}
     * The partial table is saved at out_path after every step, so a killed profile resumes.
     */
    @JvmStatic external fun startProfile(requestJson: String, listener: ProfileListener): Long

    /** Asks the profile to stop after the step in flight (what was measured stays in out_path). */
    @JvmStatic external fun cancelProfile(handle: Long)

    /** Waits for the profile to end; returns the result JSON or throws (kind "cancelled" after cancel). */
    @JvmStatic external fun awaitProfile(handle: Long): String

    /** Frees the profile's handle (after it ended). */
    @JvmStatic external fun releaseProfile(handle: Long)

    /** Loads an exported model (fbnet export) from a file; returns its handle. */
    @JvmStatic external fun loadModel(path: String, threads: Int): Long

    /** Loads an exported model from bytes (a file picker's stream); [name] appears in errors. */
    @JvmStatic external fun loadModelBytes(bytes: ByteArray, name: String, threads: Int): Long

    /** The model's description (its fbnet metadata) as JSON. */
    @JvmStatic external fun modelInfo(handle: Long): String

    /** Classifies a PNG or JPEG; returns [{"index","label","probability"}, …] best first. */
    @JvmStatic external fun classify(handle: Long, image: ByteArray, topK: Int): String

    /**
     * Times [runs] single-image runs after [warmup]; returns the report JSON (p10_us, p50_us, p90_us,
     * trimmed_mean_us, predicted_us, measured_over_predicted, …). [lutPath]: predict with this table
     * (this phone's) instead of the one recorded in the model.
     */
    @JvmStatic external fun bench(handle: Long, warmup: Int, runs: Int, lutPath: String?): String

    /** Stops a [bench] in flight on another thread after its current run; that call throws `cancelled`. */
    @JvmStatic external fun cancelBench(handle: Long)

    /** Frees the model. */
    @JvmStatic external fun closeModel(handle: Long)
}
