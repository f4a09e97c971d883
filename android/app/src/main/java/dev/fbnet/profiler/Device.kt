// What the platform says about this phone: the description stored in every table, and the conditions that
// spoil timings (heat, power saving, charging).
package dev.fbnet.profiler

import android.content.Context
import android.os.BatteryManager
import android.os.Build
import android.os.PowerManager
import dev.fbnet.profiler.core.DeviceMeta
import java.io.File

object AndroidDevice {
    /** This phone, from Build and /proc/cpuinfo (its "Hardware" line names the SoC on many phones). */
    fun meta(): DeviceMeta {
        val cpuinfo = try {
            File("/proc/cpuinfo").readText()
        } catch (e: Exception) {
            ""
        }
        val hardware = DeviceMeta.cpuinfoField(cpuinfo, "Hardware")
        val soc = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            listOf(Build.SOC_MANUFACTURER, Build.SOC_MODEL)
                .filter { it.isNotBlank() && it != Build.UNKNOWN }
                .joinToString(" ")
        } else {
            ""
        }
        return DeviceMeta(
            model = Build.MODEL,
            soc = soc.ifEmpty { hardware ?: "" },
            cpu = hardware
                ?: DeviceMeta.cpuinfoField(cpuinfo, "model name")
                ?: DeviceMeta.cpuinfoField(cpuinfo, "Processor")
                ?: Build.HARDWARE,
            cores = Runtime.getRuntime().availableProcessors(),
            os = "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
            abi = Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown",
        )
    }
}

/** Conditions under which measured latencies are slower or noisier than the phone's normal. */
data class DeviceConditions(
    /** PowerManager.THERMAL_STATUS_*, null before API 29. */
    val thermalStatus: Int?,
    val powerSave: Boolean,
    val charging: Boolean,
) {
    /** THERMAL_STATUS_MODERATE or worse: the phone is throttling or about to. */
    val hot: Boolean get() = thermalStatus != null && thermalStatus >= PowerManager.THERMAL_STATUS_MODERATE

    val anyWarning: Boolean get() = hot || powerSave || charging

    companion object {
        fun read(context: Context): DeviceConditions {
            val power = context.getSystemService(PowerManager::class.java)
            val battery = context.getSystemService(BatteryManager::class.java)
            return DeviceConditions(
                thermalStatus = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) power?.currentThermalStatus else null,
                powerSave = power?.isPowerSaveMode == true,
                charging = battery?.isCharging == true,
            )
        }
    }
}
