package dev.fbnet.profiler

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import androidx.activity.viewModels
import dev.fbnet.profiler.ui.FbnetApp

/** The single activity: two tabs, "Profile device" and "Load model" (ui/). */
class MainActivity : ComponentActivity() {
    private val model: FbnetViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        enableEdgeToEdge()
        setContent { FbnetApp(model) }
    }
}
