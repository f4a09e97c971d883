package dev.fbnet.profiler.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class JsonTest {
    @Test
    fun readsEveryKindOfValue() {
        val o = Json.parseObject(
            """ { "s": "a\"b\\c\n\u00e9\ud83d\ude00", "i": -12, "big": 18446744073709551, "f": 1.5e3,
                  "t": true, "n": null, "a": [1, [], {}], "o": {"k": "v"} } """,
        )
        assertEquals("a\"b\\c\né\uD83D\uDE00", o.string("s"))
        assertEquals(-12, o.int("i"))
        assertEquals(18446744073709551L, o.long("big"))
        assertEquals(1500.0, o.double("f"), 0.0)
        assertEquals(1500L, o.long("f"))
        assertTrue(o.bool("t"))
        assertNull(o.opt("n"))
        assertNull(o.stringOrNull("n"))
        assertNull(o.stringOrNull("absent"))
        assertEquals(3, o.arr("a").size)
        assertEquals("v", o.obj("o").string("k"))
    }

    @Test
    fun rejectsMalformedDocuments() {
        for (bad in listOf("", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"x", "tru", "{} x", "\"\t\"", "[1 2]", "\"\\x\"")) {
            assertThrows("should reject <$bad>", JsonException::class.java) { Json.parse(bad) }
        }
        assertThrows(JsonException::class.java) { Json.parse("[".repeat(10_000)) }
    }

    @Test
    fun missingOrMistypedFieldsAreNamed() {
        val o = Json.parseObject("""{"a": "x"}""")
        val e = assertThrows(JsonException::class.java) { o.double("b") }
        assertTrue(e.message!!.contains("\"b\""))
        assertThrows(JsonException::class.java) { o.double("a") }
        assertThrows(JsonException::class.java) { Json.parseObject("""{"i": 1.5}""").long("i") }
        assertThrows(JsonException::class.java) { Json.parseObject("""{"i": 3000000000}""").int("i") }
    }

    @Test
    fun writesWhatItReads() {
        val v = Json.obj(
            "s" to "q\"\\\n\u0001",
            "i" to 3,
            "d" to 0.25,
            "b" to false,
            "l" to listOf(1L, "x", null),
            "skipped" to null,
            "m" to mapOf("k" to Json.Null),
        )
        val text = v.encode()
        assertEquals("""{"s":"q\"\\\n\u0001","i":3,"d":0.25,"b":false,"l":[1,"x",null],"m":{"k":null}}""", text)
        assertEquals(v, Json.parse(text))
        assertThrows(IllegalArgumentException::class.java) { Json.of(Double.NaN) }
    }
}
