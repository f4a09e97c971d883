// What the app asks mobile-core to profile and what comes back, as plain data: the request JSON of
// FbnetNative.startProfile, the device description stored in the table, where tables are kept, and the
// progress states the screen shows.
package dev.fbnet.profiler.core

/** The search spaces built into mobile-core, the default first. */
object Spaces {
    const val DEFAULT = "fbnet-224"
    val BUILTIN = listOf("fbnet-224", "fbnet-small")
}

/** Precisions a table can hold. */
object Dtypes {
    val ALL = listOf("fp32", "int8")
}

/** The device a table is measured on (mobile-core's `DeviceInfo`); the app fills it from the platform. */
data class DeviceMeta(
    val model: String,
    val soc: String,
    val cpu: String,
    val cores: Int,
    val os: String,
    val abi: String,
) {
    fun toJson(): Json.Obj =
        Json.obj("model" to model, "soc" to soc, "cpu" to cpu, "cores" to cores, "os" to os, "abi" to abi)

    companion object {
        /**
         * The value of the first `name : value` line of /proc/cpuinfo text (`Hardware`, `model name`,
         * `Processor`), or null. Names compare without case and surrounding blanks.
         */
        fun cpuinfoField(cpuinfo: String, name: String): String? =
            cpuinfo.lineSequence()
                .mapNotNull { line ->
                    val colon = line.indexOf(':')
                    if (colon < 0) null else line.substring(0, colon).trim() to line.substring(colon + 1).trim()
                }
                .firstOrNull { (k, v) -> k.equals(name, ignoreCase = true) && v.isNotEmpty() }
                ?.second
    }
}

/** One profiling job: the fields of FbnetNative.startProfile's request JSON. */
data class ProfileRequest(
    /** A built-in space name ([Spaces.BUILTIN]) or a space's JSON text. */
    val space: String = Spaces.DEFAULT,
    val dtypes: List<String> = Dtypes.ALL,
    val threads: Int = 1,
    val device: DeviceMeta? = null,
    /** Where the table is written (after every step, so that a killed profile can resume). */
    val outPath: String,
    /** Keep the entries already in [outPath] and measure only the missing ones. */
    val resume: Boolean = true,
    /** Fewer runs per op: a quick look, not a table to search with. */
    val quick: Boolean = false,
    /** Space overrides; null keeps the space's own value. */
    val resolution: Int? = null,
    val width: Double? = null,
    val classes: Int? = null,
    val inputChannels: Int? = null,
) {
    init {
        require(dtypes.isNotEmpty()) { "choose at least one dtype" }
        require(dtypes.all { it in Dtypes.ALL }) { "dtypes are ${Dtypes.ALL}, not $dtypes" }
        require(threads >= 1) { "threads must be at least 1" }
        require(outPath.isNotBlank()) { "the table needs a path" }
    }

    fun toJson(): String =
        Json.obj(
            // A name or a whole space's JSON, either way as a string.
            "space" to space,
            "resolution" to resolution,
            "width" to width,
            "classes" to classes,
            "input_channels" to inputChannels,
            "dtypes" to dtypes.distinct(),
            "threads" to threads,
            "quick" to quick,
            "device" to device?.toJson(),
            "out_path" to outPath,
            "resume" to resume,
        ).encode()
}

/**
 * Where tables are kept: `<dir>/<space>-<model>-t<threads>.json`, names made file-safe; a quick (rough)
 * table is `…-quick.json`, so it never replaces or continues a full one.
 */
object Tables {
    const val FOLDER = "tables"

    fun fileName(space: String, deviceModel: String, threads: Int, quick: Boolean = false): String =
        "${slug(space, "space")}-${slug(deviceModel, "device")}-t$threads${if (quick) "-quick" else ""}.json"

    /** Lower case letters, digits, '.' and '_' kept; every other run of characters becomes one '-'. */
    fun slug(text: String, fallback: String): String {
        val out = StringBuilder()
        for (c in text.lowercase()) {
            if (c in 'a'..'z' || c in '0'..'9' || c == '.' || c == '_') {
                out.append(c)
            } else if (out.isNotEmpty() && out.last() != '-') {
                out.append('-')
            }
        }
        return out.toString().trim('-', '.').ifEmpty { fallback }
    }
}

/** The result JSON of a finished profile (the table itself stays in the file). */
data class ProfileResult(val path: String, val entries: Long, val noisy: Long, val seconds: Double) {
    companion object {
        fun parse(json: String): ProfileResult {
            val o = Json.parseObject(json)
            return ProfileResult(
                path = o.string("path"),
                entries = o.long("entries"),
                noisy = o.longOrNull("noisy") ?: 0,
                seconds = o.doubleOrNull("seconds") ?: 0.0,
            )
        }
    }
}

/** Where a profile stands; the screen draws exactly this. */
sealed interface ProfileState {
    data object Idle : ProfileState

    /** [total] 0: not yet known. [etaSeconds] null: no estimate yet. */
    data class Running(val done: Long, val total: Long, val step: String, val etaSeconds: Double?) : ProfileState {
        val fraction: Float get() = if (total > 0) (done.toFloat() / total).coerceIn(0f, 1f) else 0f
    }

    data class Finished(val result: ProfileResult) : ProfileState

    /** [kind] as in FbnetException: invalid_input, runtime_unavailable, io, other. */
    data class Failed(val kind: String, val message: String) : ProfileState

    /**
     * Stopped on request, or because the app left the foreground ([inBackground]: timings taken while
     * the app is in the background run on slowed or frozen cores, so the profile stops rather than
     * record them); what was measured stays in [path] and a later profile resumes from it.
     */
    data class Cancelled(val path: String, val inBackground: Boolean = false) : ProfileState

    val isTerminal: Boolean get() = this is Finished || this is Failed || this is Cancelled
}

/** mobile-core's runtime, once loaded. */
data class RuntimeInfo(val version: String, val library: String) {
    companion object {
        fun parse(json: String): RuntimeInfo {
            val o = Json.parseObject(json)
            return RuntimeInfo(o.string("version"), o.stringOrNull("library") ?: "")
        }
    }
}
