// How the screens write durations, latencies and ratios (kept here so that they are tested on the JVM).
package dev.fbnet.profiler.core

import java.util.Locale

object Format {
    /** A latency in µs: `850 µs`, `12.3 ms`, `1.25 s`. */
    fun micros(us: Double): String = when {
        !us.isFinite() -> "—"
        us < 1_000 -> "%.0f µs".format(Locale.ROOT, us)
        us < 100_000 -> "%.1f ms".format(Locale.ROOT, us / 1_000)
        us < 1_000_000 -> "%.0f ms".format(Locale.ROOT, us / 1_000)
        else -> "%.2f s".format(Locale.ROOT, us / 1_000_000)
    }

    /** A remaining or elapsed time: `42 s`, `3 min 05 s`, `1 h 02 min`; null or negative: `—`. */
    fun duration(seconds: Double?): String {
        if (seconds == null || !seconds.isFinite() || seconds < 0) return "—"
        val s = Math.round(seconds)
        return when {
            s < 60 -> "$s s"
            s < 3_600 -> "%d min %02d s".format(Locale.ROOT, s / 60, s % 60)
            else -> "%d h %02d min".format(Locale.ROOT, s / 3_600, (s % 3_600) / 60)
        }
    }

    /** A probability or accuracy in 0–1 as a percentage: `87.5%`. */
    fun percent(fraction: Double): String = "%.1f%%".format(Locale.ROOT, fraction * 100)

    /** Measured over predicted: `×1.23`. */
    fun ratio(r: Double?): String = if (r == null || !r.isFinite()) "—" else "×%.2f".format(Locale.ROOT, r)
}
