// The state of both screens and the calls into mobile-core (through dev.fbnet.profiler.core), off the main
// thread. Profile events arrive on native threads and are posted to the main thread before they touch
// Compose state.
package dev.fbnet.profiler

import android.app.Application
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import android.os.Handler
import android.os.Looper
import android.provider.OpenableColumns
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.fbnet.core.FbnetException
import dev.fbnet.core.FbnetNative
import dev.fbnet.profiler.core.BenchResult
import dev.fbnet.profiler.core.ClassScore
import dev.fbnet.profiler.core.DeviceMeta
import dev.fbnet.profiler.core.Dtypes
import dev.fbnet.profiler.core.FbnetRuntime
import dev.fbnet.profiler.core.ModelInfo
import dev.fbnet.profiler.core.ModelRepository
import dev.fbnet.profiler.core.ProfileRequest
import dev.fbnet.profiler.core.ProfileState
import dev.fbnet.profiler.core.ProfilerRepository
import dev.fbnet.profiler.core.RuntimeInfo
import dev.fbnet.profiler.core.Spaces
import dev.fbnet.profiler.core.Tables
import dev.fbnet.profiler.core.detail
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import kotlinx.coroutines.withContext
import java.io.ByteArrayOutputStream
import java.io.File
import kotlin.concurrent.thread

/** Whether libmobile_core and ONNX Runtime are loaded. */
sealed interface RuntimeStatus {
    data object Loading : RuntimeStatus
    data class Ready(val info: RuntimeInfo, val coreVersion: String) : RuntimeStatus
    data class Unavailable(val message: String) : RuntimeStatus
}

class FbnetViewModel(private val app: Application) : AndroidViewModel(app) {
    private val profiler = ProfilerRepository()
    private val models = ModelRepository()
    private val main = Handler(Looper.getMainLooper())
    private val runtimeLock = Mutex()

    val device: DeviceMeta = AndroidDevice.meta()
    val tablesDir = File(app.filesDir, Tables.FOLDER)

    var runtime by mutableStateOf<RuntimeStatus>(RuntimeStatus.Loading)
        private set

    // Profile device
    var space by mutableStateOf(Spaces.DEFAULT)
    var dtypes by mutableStateOf(Dtypes.ALL.toSet())
    var threads by mutableIntStateOf(1)
    var quick by mutableStateOf(false)
    var profileState by mutableStateOf<ProfileState>(ProfileState.Idle)
        private set
    var tables by mutableStateOf<List<File>>(emptyList())
        private set

    /** Where the current choices' table is (and a partial one waits to be resumed). */
    val tableFile: File get() = File(tablesDir, Tables.fileName(space, device.model, threads, quick))

    // Load model
    var modelThreads by mutableIntStateOf(1)
    var modelName by mutableStateOf<String?>(null)
        private set
    var modelInfo by mutableStateOf<ModelInfo?>(null)
        private set
    var bench by mutableStateOf<BenchResult?>(null)
        private set
    /** The table to predict with; null: the one recorded in the model. */
    var benchTable by mutableStateOf<File?>(null)
    var image by mutableStateOf<Bitmap?>(null)
        private set
    var classes by mutableStateOf<List<ClassScore>>(emptyList())
        private set
    /** What the model screen is doing ("Loading…"), null when idle. */
    var modelBusy by mutableStateOf<String?>(null)
        private set
    var modelError by mutableStateOf<String?>(null)
        private set

    init {
        refreshTables()
        viewModelScope.launch { ensureRuntime() }
    }

    /** Loads mobile-core and ONNX Runtime once; false (with [runtime] saying why) when they cannot be. */
    private suspend fun ensureRuntime(): Boolean {
        runtimeLock.withLock {
            if (runtime !is RuntimeStatus.Ready) {
                runtime = RuntimeStatus.Loading
                runtime = withContext(Dispatchers.IO) { loadRuntime() }
            }
        }
        return runtime is RuntimeStatus.Ready
    }

    private fun loadRuntime(): RuntimeStatus = try {
        // Extracted at install (useLegacyPackaging in build.gradle.kts): mobile-core dlopens it by path.
        val ort = File(app.applicationInfo.nativeLibraryDir, "libonnxruntime.so")
        if (!ort.exists()) {
            RuntimeStatus.Unavailable(
                "libonnxruntime.so is missing from ${ort.parent}: build the APK after android/scripts/build-native.sh"
            )
        } else {
            RuntimeStatus.Ready(FbnetRuntime.init(ort.path), FbnetNative.coreVersion())
        }
    } catch (e: UnsatisfiedLinkError) {
        RuntimeStatus.Unavailable("libmobile_core.so is missing from the APK: ${e.message}")
    } catch (e: FbnetException) {
        RuntimeStatus.Unavailable(e.detail())
    }

    fun retryRuntime() {
        viewModelScope.launch { ensureRuntime() }
    }

    fun refreshTables() {
        viewModelScope.launch {
            tables = withContext(Dispatchers.IO) {
                tablesDir.listFiles { f -> f.isFile && f.name.endsWith(".json") }
                    ?.sortedByDescending { it.lastModified() }
                    ?: emptyList()
            }
        }
    }

    /** Profiles with the current choices; [resume] keeps the entries of an existing table. */
    fun startProfile(resume: Boolean) {
        if (profiler.isRunning || modelBusy != null) return
        val request = try {
            ProfileRequest(
                space = space,
                dtypes = Dtypes.ALL.filter { it in dtypes },
                threads = threads,
                quick = quick,
                device = device,
                outPath = tableFile.path,
                resume = resume,
            )
        } catch (e: IllegalArgumentException) {
            profileState = ProfileState.Failed("invalid_input", e.message ?: "bad choice")
            return
        }
        viewModelScope.launch {
            if (!ensureRuntime()) {
                profileState = ProfileState.Failed("runtime_unavailable", (runtime as RuntimeStatus.Unavailable).message)
                return@launch
            }
            withContext(Dispatchers.IO) {
                tablesDir.mkdirs()
                if (!resume) File(request.outPath).delete()
            }
            try {
                leftForeground = false
                profiler.start(request) { s ->
                    main.post {
                        profileState = if (s is ProfileState.Cancelled && leftForeground) {
                            s.copy(inBackground = true)
                        } else {
                            s
                        }
                        if (s.isTerminal) refreshTables()
                    }
                }
            } catch (e: IllegalStateException) {
                // Another profile is still ending; the button comes back when it has.
            }
        }
    }

    fun cancelProfile() = profiler.cancel()

    /** Set when the app left the foreground during a profile, so its Cancelled state says why. */
    private var leftForeground = false

    /**
     * The activity stopped (another app, the home screen, the screen off): a profile in flight is
     * cancelled, since timings taken in the background are not the phone's; Resume continues it.
     */
    fun onAppLeftForeground() {
        if (profiler.isRunning) {
            leftForeground = true
            profiler.cancel()
        }
    }

    /** Reads a picked .onnx document and loads it. */
    fun loadModel(uri: Uri) = modelJob("Loading model…") {
        val name = displayName(uri) ?: uri.lastPathSegment ?: "model.onnx"
        val bytes = app.contentResolver.openInputStream(uri)?.use { it.readBytes() }
            ?: throw FbnetException("io: cannot open $name")
        val info = models.loadBytes(bytes, name, modelThreads)
        withContext(Dispatchers.Main) {
            modelName = name
            modelInfo = info
            bench = null
            classes = emptyList()
            image = null
        }
    }

    fun benchModel() = modelJob("Benchmarking…") {
        val result = models.bench(warmup = 10, runs = 50, lutPath = benchTable?.path)
        withContext(Dispatchers.Main) { bench = result }
    }

    /** Classifies a picked photo; formats other than PNG and JPEG (HEIF, WebP) are re-encoded as PNG. */
    fun classify(uri: Uri) = modelJob("Classifying…") {
        val bytes = app.contentResolver.openInputStream(uri)?.use { it.readBytes() }
            ?: throw FbnetException("io: cannot open the image")
        val thumb = decodeThumbnail(bytes)
        val input = if (isPngOrJpeg(bytes)) bytes else reencodePng(bytes)
        val top = models.classify(input, topK = 5)
        withContext(Dispatchers.Main) {
            image = thumb
            classes = top
        }
    }

    /** Runs [work] on the IO dispatcher with the screen showing [what]; errors land in [modelError]. */
    private fun modelJob(what: String, work: suspend () -> Unit) {
        // One thing at a time: a model's runs during a profile would disturb its timings.
        if (modelBusy != null || profileState is ProfileState.Running) return
        modelBusy = what
        modelError = null
        viewModelScope.launch {
            try {
                if (!ensureRuntime()) {
                    modelError = (runtime as RuntimeStatus.Unavailable).message
                    return@launch
                }
                withContext(Dispatchers.IO) { work() }
            } catch (e: FbnetException) {
                modelError = "${e.kind}: ${e.detail()}"
            } catch (e: Exception) {
                modelError = e.message ?: e.toString()
            } finally {
                modelBusy = null
            }
        }
    }

    private fun displayName(uri: Uri): String? =
        app.contentResolver.query(uri, arrayOf(OpenableColumns.DISPLAY_NAME), null, null, null)?.use { c ->
            if (c.moveToFirst()) c.getString(0) else null
        }

    override fun onCleared() {
        // The partial table stays and resumes next time. Closing waits for a model call in flight, so not
        // on the main thread.
        profiler.cancel()
        thread(name = "fbnet-close-model") { models.close() }
    }

    private companion object {
        fun isPngOrJpeg(b: ByteArray): Boolean =
            (b.size > 8 && b[0] == 0x89.toByte() && b[1] == 'P'.code.toByte() && b[2] == 'N'.code.toByte() &&
                b[3] == 'G'.code.toByte()) ||
                (b.size > 3 && b[0] == 0xFF.toByte() && b[1] == 0xD8.toByte() && b[2] == 0xFF.toByte())

        fun reencodePng(bytes: ByteArray): ByteArray {
            val bitmap = BitmapFactory.decodeByteArray(bytes, 0, bytes.size)
                ?: throw FbnetException("invalid_input: the image cannot be decoded")
            return ByteArrayOutputStream().also { bitmap.compress(Bitmap.CompressFormat.PNG, 100, it) }.toByteArray()
        }

        /** A bitmap about 512 px on its short side, for the screen only. */
        fun decodeThumbnail(bytes: ByteArray): Bitmap? {
            val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
            BitmapFactory.decodeByteArray(bytes, 0, bytes.size, bounds)
            var sample = 1
            while (minOf(bounds.outWidth, bounds.outHeight) / (sample * 2) >= 512) sample *= 2
            return BitmapFactory.decodeByteArray(bytes, 0, bytes.size, BitmapFactory.Options().apply { inSampleSize = sample })
        }
    }
}
