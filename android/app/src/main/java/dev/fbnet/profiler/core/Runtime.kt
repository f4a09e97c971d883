// Loading libmobile_core and ONNX Runtime, once per process.
package dev.fbnet.profiler.core

import dev.fbnet.core.FbnetNative

object FbnetRuntime {
    @Volatile
    private var loaded: RuntimeInfo? = null

    /**
     * Loads libmobile_core and then ONNX Runtime from [ortLibraryPath] (null: mobile-core's default places).
     * Later calls return the first result. Throws UnsatisfiedLinkError when libmobile_core is missing and
     * FbnetException (kind runtime_unavailable) when ONNX Runtime cannot be loaded.
     */
    @Synchronized
    fun init(ortLibraryPath: String?): RuntimeInfo {
        loaded?.let { return it }
        FbnetNative.loadLibrary()
        return RuntimeInfo.parse(FbnetNative.initRuntime(ortLibraryPath)).also { loaded = it }
    }

    /** The runtime loaded by [init], if any. */
    val info: RuntimeInfo? get() = loaded
}
