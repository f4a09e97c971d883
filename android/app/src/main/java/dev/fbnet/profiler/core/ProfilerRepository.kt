// Runs one profile at a time through mobile-core and turns its callbacks into ProfileState values. Every
// state reaches the observer on a background thread (mobile-core's worker, or this class's waiter): a UI
// posts it to its own thread.
package dev.fbnet.profiler.core

import dev.fbnet.core.FbnetException
import dev.fbnet.core.FbnetNative
import dev.fbnet.core.ProfileListener
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread

/** The profiling half of the JNI facade, behind an interface so that the state machine can be tested alone. */
interface ProfileBackend {
    fun start(requestJson: String, listener: ProfileListener): Long
    fun cancel(handle: Long)
    fun await(handle: Long): String
    fun release(handle: Long)
}

/** [ProfileBackend] over libmobile_core. */
object NativeProfileBackend : ProfileBackend {
    override fun start(requestJson: String, listener: ProfileListener) = FbnetNative.startProfile(requestJson, listener)
    override fun cancel(handle: Long) = FbnetNative.cancelProfile(handle)
    override fun await(handle: Long) = FbnetNative.awaitProfile(handle)
    override fun release(handle: Long) = FbnetNative.releaseProfile(handle)
}

/** The message of an [FbnetException] without its `kind:` prefix. */
fun FbnetException.detail(): String = withoutKind(kind, message ?: kind)

/** [message] without a leading `kind:`, so that the screen does not show the kind twice. */
fun withoutKind(kind: String, message: String): String =
    if (message.startsWith("$kind:")) message.substring(kind.length + 1).trim() else message

class ProfilerRepository(private val backend: ProfileBackend = NativeProfileBackend) {
    private val lock = Any()
    private var current: Run? = null // the run in progress
    private var last: Run? = null // the latest run, ended or not

    @Volatile
    var state: ProfileState = ProfileState.Idle
        private set

    val isRunning: Boolean get() = state is ProfileState.Running

    /**
     * Starts [request]; [observer] receives every state from Running to exactly one terminal state
     * (Finished, Failed or Cancelled). Throws IllegalStateException while another profile runs.
     */
    fun start(request: ProfileRequest, observer: (ProfileState) -> Unit) {
        val run = synchronized(lock) {
            check(current == null) { "a profile is already running" }
            Run(request, observer).also {
                current = it
                last = it
            }
        }
        run.publish(ProfileState.Running(0, 0, "starting", null))
        val handle = try {
            backend.start(request.toJson(), run)
        } catch (e: Exception) {
            run.end(if (e is FbnetException) failure(e.kind, e.detail(), request) else e.asFailure())
            run.released.countDown()
            return
        }
        synchronized(run) { run.handle = handle }
        if (run.cancelRequested) run.cancelNow()
        // The listener's onFinished/onError and awaitProfile report the same end; whichever comes first wins.
        thread(name = "fbnet-profile-wait", isDaemon = true) {
            try {
                run.end(ProfileState.Finished(ProfileResult.parse(backend.await(handle))))
            } catch (e: FbnetException) {
                run.end(failure(e.kind, e.detail(), request))
            } catch (e: Exception) {
                run.end(e.asFailure())
            } finally {
                synchronized(run) {
                    run.handle = null
                    try {
                        backend.release(handle)
                    } catch (e: FbnetException) {
                        // already gone: nothing to free
                    }
                }
                run.released.countDown()
            }
        }
    }

    /** Asks the running profile to stop after the step in flight; its Cancelled state follows. */
    fun cancel() {
        val run = synchronized(lock) { current } ?: return
        run.cancelRequested = true
        run.cancelNow()
    }

    /** Waits until the current profile has ended and its handle is freed; returns the last state. */
    fun awaitEnd(timeoutMs: Long = Long.MAX_VALUE): ProfileState {
        val run = synchronized(lock) { last }
        run?.released?.await(timeoutMs, TimeUnit.MILLISECONDS)
        return state
    }

    private fun failure(kind: String, message: String, request: ProfileRequest): ProfileState =
        if (kind == "cancelled") ProfileState.Cancelled(request.outPath) else ProfileState.Failed(kind, message)

    private fun Exception.asFailure() = ProfileState.Failed("other", message ?: toString())

    private inner class Run(val request: ProfileRequest, val observer: (ProfileState) -> Unit) : ProfileListener {
        var handle: Long? = null // guarded by this
        @Volatile var cancelRequested = false
        private var ended = false // guarded by lock
        val released = CountDownLatch(1)

        /**
         * Passes a cancel on to the native profile once it has a handle, under this run's lock so that
         * the handle cannot be freed in between.
         */
        fun cancelNow() {
            synchronized(this) {
                val h = handle ?: return
                try {
                    backend.cancel(h)
                } catch (e: FbnetException) {
                    // it has just ended
                }
            }
        }

        fun publish(s: ProfileState) {
            synchronized(lock) {
                if (ended) return
                state = s
                observer(s)
            }
        }

        fun end(s: ProfileState) {
            synchronized(lock) {
                if (ended) return
                ended = true
                state = s
                if (current === this) current = null
                observer(s)
            }
        }

        override fun onProgress(done: Long, total: Long, step: String, etaSeconds: Double) =
            publish(ProfileState.Running(done, total, step, etaSeconds.takeIf { it.isFinite() && it >= 0 }))

        override fun onFinished(resultJson: String) {
            try {
                end(ProfileState.Finished(ProfileResult.parse(resultJson)))
            } catch (e: JsonException) {
                end(ProfileState.Failed("other", "unreadable result: ${e.message}"))
            }
        }

        override fun onError(kind: String, message: String) = end(failure(kind, withoutKind(kind, message), request))
    }
}
