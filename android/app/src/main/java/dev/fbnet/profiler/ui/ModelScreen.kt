package dev.fbnet.profiler.ui

import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.Image
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.size
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.Card
import androidx.compose.material3.CircularProgressIndicator
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import dev.fbnet.profiler.FbnetViewModel
import dev.fbnet.profiler.R
import dev.fbnet.profiler.core.BenchResult
import dev.fbnet.profiler.core.Format
import dev.fbnet.profiler.core.ModelInfo
import dev.fbnet.profiler.core.ProfileState

@Composable
fun ModelScreen(model: FbnetViewModel) {
    // .onnx has no registered MIME type: every document is offered and mobile-core judges the bytes.
    val pickModel = rememberLauncherForActivityResult(ActivityResultContracts.OpenDocument()) { uri ->
        if (uri != null) model.loadModel(uri)
    }
    val pickImage = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) model.classify(uri)
    }
    // A profile times the phone's cores: the model's runs would disturb it, so they wait for it.
    val profiling = model.profileState is ProfileState.Running
    val busy = model.modelBusy ?: if (profiling) stringResource(R.string.model_waits_for_profile) else null
    val info = model.modelInfo

    Column(
        Modifier.verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(12.dp),
    ) {
        RuntimeBanner(model)
        Section(stringResource(R.string.threads)) {
            for (t in listOf(1, 2, 4).filter { it <= model.device.cores }) {
                Choice("$t", selected = model.modelThreads == t, enabled = busy == null) { model.modelThreads = t }
            }
        }
        Button(
            onClick = { pickModel.launch(arrayOf("*/*")) },
            enabled = busy == null,
            modifier = Modifier.fillMaxWidth(),
        ) { Text(stringResource(R.string.load_model)) }

        if (busy != null) {
            Row(verticalAlignment = Alignment.CenterVertically, horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                CircularProgressIndicator(Modifier.size(20.dp), strokeWidth = 2.dp)
                Text(busy)
            }
        }
        model.modelError?.let { ErrorCard(it) }

        if (info != null) {
            InfoCard(model.modelName ?: info.name, info)

            HorizontalDivider()
            Section(stringResource(R.string.bench_table)) {
                Choice(stringResource(R.string.bench_models_table), selected = model.benchTable == null, enabled = busy == null) {
                    model.benchTable = null
                }
                for (f in model.tables) {
                    Choice(f.name, selected = model.benchTable == f, enabled = busy == null) { model.benchTable = f }
                }
            }
            Button(onClick = model::benchModel, enabled = busy == null, modifier = Modifier.fillMaxWidth()) {
                Text(stringResource(R.string.bench))
            }
            model.bench?.let { BenchCard(it) }

            HorizontalDivider()
            OutlinedButton(
                onClick = { pickImage.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) },
                enabled = busy == null,
                modifier = Modifier.fillMaxWidth(),
            ) { Text(stringResource(R.string.classify)) }
            model.image?.let { Image(it.asImageBitmap(), contentDescription = null, modifier = Modifier.size(160.dp)) }
            if (model.classes.isNotEmpty()) {
                Card(Modifier.fillMaxWidth()) {
                    Column(Modifier.padding(12.dp)) {
                        Text(stringResource(R.string.top5), style = MaterialTheme.typography.titleSmall)
                        for (c in model.classes) {
                            Row {
                                Text(c.label.ifEmpty { "#${c.index}" }, Modifier.weight(1f))
                                Text(Format.percent(c.probability.toDouble()))
                            }
                        }
                    }
                }
            }
        }
    }
}

@Composable
private fun InfoCard(name: String, info: ModelInfo) {
    Card(Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            Text(name, style = MaterialTheme.typography.titleMedium)
            Row2(stringResource(R.string.info_arch), info.name)
            Text(info.arch, style = MaterialTheme.typography.bodySmall)
            Row2(stringResource(R.string.info_dtype), info.dtype)
            Row2(stringResource(R.string.info_space), info.space)
            Row2(stringResource(R.string.info_input), info.inputShape.joinToString("×"))
            Row2(stringResource(R.string.info_labels), "${info.labels.size}")
            Row2(stringResource(R.string.info_dataset), info.dataset)
            Row2(stringResource(R.string.info_accuracy), info.accuracy?.let(Format::percent) ?: "—")
            info.prediction?.let { p ->
                Row2(stringResource(R.string.info_predicted), info.predictedUs?.let(Format::micros) ?: "—")
                Text(stringResource(R.string.info_predicted_by, p.lut, p.device, p.threads), style = MaterialTheme.typography.bodySmall)
            }
        }
    }
}

@Composable
private fun BenchCard(b: BenchResult) {
    Card(Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            Text(stringResource(R.string.bench_result, b.runs, b.threads, b.runtime), style = MaterialTheme.typography.titleSmall)
            Row2(stringResource(R.string.bench_measured), Format.micros(b.trimmedMeanUs))
            Row2(stringResource(R.string.bench_predicted), b.predictedUs?.let(Format::micros) ?: "—")
            Row2(stringResource(R.string.bench_ratio), Format.ratio(b.measuredOverPredicted))
            b.speedNow?.let { Row2(stringResource(R.string.bench_pace), Format.ratio(it)) }
            b.predictedNowUs?.let { Row2(stringResource(R.string.bench_predicted_now), Format.micros(it)) }
            Row2("p10 / p50 / p90", listOf(b.p10Us, b.p50Us, b.p90Us).joinToString(" / ") { Format.micros(it) })
            Row2(stringResource(R.string.bench_min_mean), "${Format.micros(b.minUs)} / ${Format.micros(b.meanUs)}")
            b.predictedBy?.let { Text(it, style = MaterialTheme.typography.bodySmall) }
        }
    }
}

@Composable
private fun Row2(label: String, value: String) {
    Row(Modifier.fillMaxWidth()) {
        Text(label, Modifier.weight(1f), style = MaterialTheme.typography.bodyMedium)
        Text(value, style = MaterialTheme.typography.bodyMedium)
    }
}
