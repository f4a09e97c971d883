package dev.fbnet.profiler.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Test

class ProfilingTest {
    private val device = DeviceMeta("Pixel 8", "Tensor G3", "Tensor G3", 9, "Android 15 (API 35)", "arm64-v8a")

    @Test
    fun requestJsonHasTheContractsFields() {
        val r = ProfileRequest(space = "fbnet-small", threads = 2, device = device, outPath = "/data/t.json", width = 0.25)
        val o = Json.parseObject(r.toJson())
        assertEquals("fbnet-small", o.string("space"))
        assertEquals(listOf("fp32", "int8"), o.arr("dtypes").map { it.asString() })
        assertEquals(2, o.int("threads"))
        assertFalse(o.bool("quick"))
        assertEquals(true, o.bool("resume"))
        assertEquals("/data/t.json", o.string("out_path"))
        assertEquals(0.25, o.double("width"), 0.0)
        assertEquals(null, o["resolution"]) // absent: the space's own
        val d = o.obj("device")
        assertEquals("Pixel 8", d.string("model"))
        assertEquals(9, d.int("cores"))
        assertEquals("arm64-v8a", d.string("abi"))
    }

    @Test
    fun aSpaceGivenAsJsonTravelsAsAString() {
        val space = """{"name": "mine"}"""
        val r = ProfileRequest(space = space, outPath = "/t.json")
        assertEquals(space, Json.parseObject(r.toJson()).string("space"))
    }

    @Test
    fun badRequestsAreRefused() {
        assertThrows(IllegalArgumentException::class.java) { ProfileRequest(dtypes = emptyList(), outPath = "/t") }
        assertThrows(IllegalArgumentException::class.java) { ProfileRequest(dtypes = listOf("fp16"), outPath = "/t") }
        assertThrows(IllegalArgumentException::class.java) { ProfileRequest(threads = 0, outPath = "/t") }
    }

    @Test
    fun tableNamesAreFileSafe() {
        assertEquals("fbnet-224-pixel-8-t1.json", Tables.fileName("fbnet-224", "Pixel 8", 1))
        assertEquals("fbnet-small-sm-s911b-ds-t4.json", Tables.fileName("fbnet-small", " SM-S911B/DS ", 4))
        assertEquals("fbnet-224-device-t1.json", Tables.fileName("fbnet-224", "../", 1))
        // a quick table never shares a file with a full one
        assertEquals("fbnet-224-pixel-8-t2-quick.json", Tables.fileName("fbnet-224", "Pixel 8", 2, quick = true))
    }

    @Test
    fun cpuinfoFields() {
        val text = "processor\t: 0\nBogoMIPS\t: 38.40\n\nHardware\t: Qualcomm Technologies, Inc SM8550\nSerial : \n"
        assertEquals("Qualcomm Technologies, Inc SM8550", DeviceMeta.cpuinfoField(text, "hardware"))
        assertEquals(null, DeviceMeta.cpuinfoField(text, "Serial"))
        assertEquals(null, DeviceMeta.cpuinfoField(text, "model name"))
    }

    @Test
    fun formats() {
        assertEquals("850 µs", Format.micros(850.0))
        assertEquals("12.3 ms", Format.micros(12_345.0))
        assertEquals("1.25 s", Format.micros(1_250_000.0))
        assertEquals("42 s", Format.duration(42.2))
        assertEquals("3 min 05 s", Format.duration(185.0))
        assertEquals("1 h 02 min", Format.duration(3_725.0))
        assertEquals("—", Format.duration(null))
        assertEquals("×1.23", Format.ratio(1.234))
        assertEquals("87.5%", Format.percent(0.875))
    }
}
