// A small JSON reader and writer on the Kotlin standard library alone (org.json exists only on Android, and
// this package is also compiled and tested on a desktop JVM). It covers what mobile-core's JNI facade
// exchanges: objects, arrays, strings, numbers, booleans and null.
package dev.fbnet.profiler.core

/** Malformed JSON, or a document without a field the app needs. */
class JsonException(message: String) : RuntimeException(message)

/** A JSON value. Numbers keep their text, so 64-bit integers survive exactly. */
sealed interface Json {
    /** The value as JSON text. */
    fun encode(): String = StringBuilder().also { encodeTo(it) }.toString()

    fun encodeTo(out: StringBuilder)

    data class Obj(val fields: Map<String, Json>) : Json {
        operator fun get(key: String): Json? = fields[key]

        /** The field, null when absent or JSON null. */
        fun opt(key: String): Json? = fields[key]?.takeUnless { it == Null }

        fun req(key: String): Json = opt(key) ?: throw JsonException("missing field \"$key\"")

        fun string(key: String): String = req(key).asString(key)
        fun stringOrNull(key: String): String? = opt(key)?.asString(key)
        fun double(key: String): Double = req(key).asDouble(key)
        fun doubleOrNull(key: String): Double? = opt(key)?.asDouble(key)
        fun long(key: String): Long = req(key).asLong(key)
        fun longOrNull(key: String): Long? = opt(key)?.asLong(key)
        fun int(key: String): Int = long(key).toIntChecked(key)
        fun intOrNull(key: String): Int? = longOrNull(key)?.toIntChecked(key)
        fun bool(key: String): Boolean = req(key).asBool(key)
        fun obj(key: String): Obj = req(key) as? Obj ?: throw JsonException("\"$key\" is not an object")
        fun objOrNull(key: String): Obj? = opt(key)?.let { it as? Obj ?: throw JsonException("\"$key\" is not an object") }
        fun arr(key: String): List<Json> = (req(key) as? Arr ?: throw JsonException("\"$key\" is not an array")).items
        fun arrOrNull(key: String): List<Json>? =
            opt(key)?.let { (it as? Arr ?: throw JsonException("\"$key\" is not an array")).items }

        override fun encodeTo(out: StringBuilder) {
            out.append('{')
            var first = true
            for ((k, v) in fields) {
                if (!first) out.append(',')
                first = false
                quoteTo(k, out)
                out.append(':')
                v.encodeTo(out)
            }
            out.append('}')
        }
    }

    data class Arr(val items: List<Json>) : Json {
        override fun encodeTo(out: StringBuilder) {
            out.append('[')
            items.forEachIndexed { i, v ->
                if (i > 0) out.append(',')
                v.encodeTo(out)
            }
            out.append(']')
        }
    }

    data class Str(val value: String) : Json {
        override fun encodeTo(out: StringBuilder) = quoteTo(value, out)
    }

    /** A number as written in the document (validated by the reader or produced by [of]). */
    data class Num(val text: String) : Json {
        fun toDouble(): Double = text.toDouble()

        fun toLong(): Long = text.toLongOrNull() ?: toDouble().let { d ->
            if (d != Math.floor(d) || d !in -9.2e18..9.2e18) throw JsonException("$text is not an integer")
            d.toLong()
        }

        override fun encodeTo(out: StringBuilder) {
            out.append(text)
        }
    }

    data class Bool(val value: Boolean) : Json {
        override fun encodeTo(out: StringBuilder) {
            out.append(if (value) "true" else "false")
        }
    }

    data object Null : Json {
        override fun encodeTo(out: StringBuilder) {
            out.append("null")
        }
    }

    companion object {
        /** Parses a whole document (nothing but white space may follow the value). */
        fun parse(text: String): Json = Reader(text).document()

        /** Parses a document that must be an object. */
        fun parseObject(text: String): Obj = parse(text) as? Obj ?: throw JsonException("expected a JSON object")

        /** Parses a document that must be an array. */
        fun parseArray(text: String): List<Json> =
            (parse(text) as? Arr ?: throw JsonException("expected a JSON array")).items

        /**
         * Converts a Kotlin value: null, String, Boolean, Int/Long/Short/Byte, finite Float/Double, Map with
         * String keys, List, or a [Json] value. A null field of a map is written as JSON null.
         */
        fun of(value: Any?): Json = when (value) {
            null -> Null
            is Json -> value
            is String -> Str(value)
            is Boolean -> Bool(value)
            is Int, is Long, is Short, is Byte -> Num(value.toString())
            is Double -> Num(finite(value).toString())
            is Float -> Num(finite(value.toDouble()).toString())
            is Map<*, *> -> Obj(
                value.entries.associate { (k, v) ->
                    (k as? String ?: throw IllegalArgumentException("JSON keys are strings, not $k")) to of(v)
                },
            )
            is List<*> -> Arr(value.map { of(it) })
            else -> throw IllegalArgumentException("cannot write ${value::class.simpleName} as JSON")
        }

        /** An object from pairs, in order; pairs whose value is null are left out. */
        fun obj(vararg fields: Pair<String, Any?>): Obj =
            Obj(LinkedHashMap<String, Json>().apply { for ((k, v) in fields) if (v != null) put(k, of(v)) })

        fun quote(s: String): String = StringBuilder().also { quoteTo(s, it) }.toString()

        private fun finite(d: Double): Double {
            require(d.isFinite()) { "JSON has no $d" }
            return d
        }

        private fun quoteTo(s: String, out: StringBuilder) {
            out.append('"')
            for (c in s) {
                when (c) {
                    '"' -> out.append("\\\"")
                    '\\' -> out.append("\\\\")
                    '\n' -> out.append("\\n")
                    '\r' -> out.append("\\r")
                    '\t' -> out.append("\\t")
                    '\b' -> out.append("\\b")
                    '\u000C' -> out.append("\\f")
                    else -> if (c < ' ') out.append("\\u%04x".format(c.code)) else out.append(c)
                }
            }
            out.append('"')
        }
    }
}

fun Json.asString(what: String = "value"): String = (this as? Json.Str)?.value ?: throw JsonException("\"$what\" is not a string")
fun Json.asDouble(what: String = "value"): Double = (this as? Json.Num)?.toDouble() ?: throw JsonException("\"$what\" is not a number")
fun Json.asLong(what: String = "value"): Long = (this as? Json.Num)?.toLong() ?: throw JsonException("\"$what\" is not a number")
fun Json.asBool(what: String = "value"): Boolean = (this as? Json.Bool)?.value ?: throw JsonException("\"$what\" is not a boolean")
fun Json.asObj(what: String = "value"): Json.Obj = this as? Json.Obj ?: throw JsonException("\"$what\" is not an object")

private fun Long.toIntChecked(what: String): Int {
    if (this !in Int.MIN_VALUE..Int.MAX_VALUE) throw JsonException("\"$what\" is out of range: $this")
    return toInt()
}

/** Recursive descent over the text; nesting is limited so a hostile document cannot overflow the stack. */
private class Reader(private val s: String) {
    private var i = 0
    private var depth = 0

    fun document(): Json {
        val v = value()
        skipSpace()
        if (i != s.length) fail("unexpected text after the value")
        return v
    }

    private fun fail(what: String): Nothing = throw JsonException("$what at offset $i")

    private fun skipSpace() {
        while (i < s.length && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++
    }

    private fun value(): Json {
        skipSpace()
        if (i >= s.length) fail("unexpected end")
        return when (val c = s[i]) {
            '{' -> nested { obj() }
            '[' -> nested { arr() }
            '"' -> Json.Str(string())
            't' -> literal("true", Json.Bool(true))
            'f' -> literal("false", Json.Bool(false))
            'n' -> literal("null", Json.Null)
            else -> if (c == '-' || c in '0'..'9') number() else fail("unexpected '$c'")
        }
    }

    private inline fun nested(read: () -> Json): Json {
        if (++depth > MAX_DEPTH) fail("nesting deeper than $MAX_DEPTH")
        return read().also { depth-- }
    }

    private fun literal(word: String, v: Json): Json {
        if (!s.startsWith(word, i)) fail("expected $word")
        i += word.length
        return v
    }

    private fun obj(): Json.Obj {
        i++ // {
        val fields = LinkedHashMap<String, Json>()
        skipSpace()
        if (i < s.length && s[i] == '}') {
            i++
            return Json.Obj(fields)
        }
        while (true) {
            skipSpace()
            if (i >= s.length || s[i] != '"') fail("expected a field name")
            val key = string()
            skipSpace()
            if (i >= s.length || s[i] != ':') fail("expected ':'")
            i++
            fields[key] = value()
            skipSpace()
            when (if (i < s.length) s[i] else ' ') {
                ',' -> i++
                '}' -> {
                    i++
                    return Json.Obj(fields)
                }
                else -> fail("expected ',' or '}'")
            }
        }
    }

    private fun arr(): Json.Arr {
        i++ // [
        val items = ArrayList<Json>()
        skipSpace()
        if (i < s.length && s[i] == ']') {
            i++
            return Json.Arr(items)
        }
        while (true) {
            items.add(value())
            skipSpace()
            when (if (i < s.length) s[i] else ' ') {
                ',' -> i++
                ']' -> {
                    i++
                    return Json.Arr(items)
                }
                else -> fail("expected ',' or ']'")
            }
        }
    }

    private fun string(): String {
        i++ // opening quote
        val out = StringBuilder()
        while (true) {
            if (i >= s.length) fail("unterminated string")
            val c = s[i++]
            when {
                c == '"' -> return out.toString()
                c == '\\' -> {
                    if (i >= s.length) fail("unterminated escape")
                    when (val e = s[i++]) {
                        '"' -> out.append('"')
                        '\\' -> out.append('\\')
                        '/' -> out.append('/')
                        'b' -> out.append('\b')
                        'f' -> out.append('\u000C')
                        'n' -> out.append('\n')
                        'r' -> out.append('\r')
                        't' -> out.append('\t')
                        // A surrogate pair arrives as two escapes; appending both UTF-16 units rebuilds it.
                        'u' -> {
                            if (i + 4 > s.length) fail("short \\u escape")
                            val code = s.substring(i, i + 4).toIntOrNull(16) ?: fail("bad \\u escape")
                            out.append(code.toChar())
                            i += 4
                        }
                        else -> fail("bad escape '\\$e'")
                    }
                }
                c < ' ' -> fail("control character in a string")
                else -> out.append(c)
            }
        }
    }

    private fun number(): Json.Num {
        val start = i
        if (s[i] == '-') i++
        if (i < s.length && s[i] == '0') {
            i++
        } else {
            if (i >= s.length || s[i] !in '1'..'9') fail("bad number")
            while (i < s.length && s[i] in '0'..'9') i++
        }
        if (i < s.length && s[i] == '.') {
            i++
            if (i >= s.length || s[i] !in '0'..'9') fail("bad fraction")
            while (i < s.length && s[i] in '0'..'9') i++
        }
        if (i < s.length && (s[i] == 'e' || s[i] == 'E')) {
            i++
            if (i < s.length && (s[i] == '+' || s[i] == '-')) i++
            if (i >= s.length || s[i] !in '0'..'9') fail("bad exponent")
            while (i < s.length && s[i] in '0'..'9') i++
        }
        return Json.Num(s.substring(start, i))
    }

    private companion object {
        const val MAX_DEPTH = 256
    }
}
