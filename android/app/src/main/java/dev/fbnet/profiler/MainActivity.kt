package dev.fbnet.profiler

import android.os.Bundle
import android.view.WindowManager
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.snapshotFlow
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import androidx.activity.viewModels
import dev.fbnet.profiler.core.ProfileState
import dev.fbnet.profiler.ui.FbnetApp

/** The single activity: two tabs, "Profile device" and "Load model" (ui/). */
class MainActivity : ComponentActivity() {
    private val model: FbnetViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        enableEdgeToEdge()
        setContent {
            // The screen stays on for the whole profile, whichever tab is shown.
            LaunchedEffect(Unit) {
                snapshotFlow { model.profileState is ProfileState.Running }.collect { running ->
                    if (running) {
                        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
                    } else {
                        window.clearFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
                    }
                }
            }
            FbnetApp(model)
        }
    }

    override fun onStop() {
        super.onStop()
        model.onAppLeftForeground()
    }
}
