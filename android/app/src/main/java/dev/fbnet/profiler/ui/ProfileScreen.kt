package dev.fbnet.profiler.ui

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.selection.selectable
import androidx.compose.foundation.selection.toggleable
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.Card
import androidx.compose.material3.CardDefaults
import androidx.compose.material3.Checkbox
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.RadioButton
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.semantics.Role
import androidx.compose.ui.unit.dp
import dev.fbnet.profiler.DeviceConditions
import dev.fbnet.profiler.FbnetViewModel
import dev.fbnet.profiler.R
import dev.fbnet.profiler.RuntimeStatus
import dev.fbnet.profiler.core.Dtypes
import dev.fbnet.profiler.core.Format
import dev.fbnet.profiler.core.ProfileState
import dev.fbnet.profiler.core.Spaces
import dev.fbnet.profiler.shareTable
import kotlinx.coroutines.delay
import java.io.File

@Composable
fun ProfileScreen(model: FbnetViewModel) {
    val state = model.profileState
    val running = state is ProfileState.Running

    Column(
        Modifier.verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(12.dp),
    ) {
        RuntimeBanner(model)
        DeviceCard(model)
        ConditionsWarning()

        Section(stringResource(R.string.space)) {
            for (space in Spaces.BUILTIN) {
                Choice(space, selected = model.space == space, enabled = !running) { model.space = space }
            }
        }
        Section(stringResource(R.string.dtypes)) {
            for (dtype in Dtypes.ALL) {
                Check(dtype, checked = dtype in model.dtypes, enabled = !running) { on ->
                    model.dtypes = if (on) model.dtypes + dtype else model.dtypes - dtype
                }
            }
        }
        Section(stringResource(R.string.threads)) {
            for (t in threadChoices(model.device.cores)) {
                Choice("$t", selected = model.threads == t, enabled = !running) { model.threads = t }
            }
        }
        Check(stringResource(R.string.quick), checked = model.quick, enabled = !running) { model.quick = it }

        HorizontalDivider()
        when (state) {
            is ProfileState.Running -> RunningCard(state, onCancel = model::cancelProfile)
            else -> StartButtons(model)
        }
        when (state) {
            is ProfileState.Finished -> ResultCard(
                title = stringResource(R.string.profile_finished),
                lines = listOf(
                    stringResource(R.string.profile_entries, state.result.entries, state.result.noisy),
                    stringResource(R.string.profile_took, Format.duration(state.result.seconds)),
                    state.result.path,
                ),
                share = File(state.result.path),
            )
            is ProfileState.Cancelled -> ResultCard(
                title = stringResource(R.string.profile_cancelled),
                lines = listOf(
                    stringResource(
                        if (state.inBackground) R.string.profile_cancelled_background else R.string.profile_cancelled_detail,
                    ),
                    state.path,
                ),
                share = null,
            )
            is ProfileState.Failed -> ErrorCard("${state.kind}: ${state.message}")
            else -> {}
        }

        SavedTables(model.tables)
    }
}

/** 1, 2, 4 and all cores, as far as the phone has them. */
private fun threadChoices(cores: Int): List<Int> = (listOf(1, 2, 4).filter { it <= cores } + cores).distinct()

@Composable
fun RuntimeBanner(model: FbnetViewModel) {
    when (val r = model.runtime) {
        RuntimeStatus.Loading -> Text(stringResource(R.string.runtime_loading), style = MaterialTheme.typography.bodySmall)
        is RuntimeStatus.Ready -> Text(
            stringResource(R.string.runtime_ready, r.info.version, r.coreVersion),
            style = MaterialTheme.typography.bodySmall,
        )
        is RuntimeStatus.Unavailable -> Card(colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.errorContainer)) {
            Column(Modifier.padding(12.dp)) {
                Text(stringResource(R.string.runtime_unavailable), style = MaterialTheme.typography.titleSmall)
                Text(r.message, style = MaterialTheme.typography.bodySmall)
                TextButton(onClick = model::retryRuntime) { Text(stringResource(R.string.retry)) }
            }
        }
    }
}

@Composable
private fun DeviceCard(model: FbnetViewModel) {
    val d = model.device
    Card(Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            Text(d.model, style = MaterialTheme.typography.titleMedium)
            Text(listOf(d.soc, d.cpu).filter { it.isNotBlank() }.distinct().joinToString(" · "))
            Text(stringResource(R.string.device_line, d.cores, d.abi, d.os), style = MaterialTheme.typography.bodySmall)
        }
    }
}

/** Warns about heat, power saving and charging, re-read every few seconds. */
@Composable
private fun ConditionsWarning() {
    val context = LocalContext.current
    var conditions by remember { mutableStateOf(DeviceConditions.read(context)) }
    LaunchedEffect(context) {
        while (true) {
            delay(5_000)
            conditions = DeviceConditions.read(context)
        }
    }
    if (!conditions.anyWarning) return
    Card(colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.tertiaryContainer)) {
        Column(Modifier.padding(12.dp)) {
            if (conditions.hot) Text(stringResource(R.string.warn_hot))
            if (conditions.powerSave) Text(stringResource(R.string.warn_power_save))
            if (conditions.charging) Text(stringResource(R.string.warn_charging))
        }
    }
}

@Composable
private fun StartButtons(model: FbnetViewModel) {
    val ready = model.runtime !is RuntimeStatus.Unavailable && model.dtypes.isNotEmpty()
    val file = model.tableFile
    val partial = model.tables.any { it.name == file.name }
    Text(stringResource(R.string.table_target, file.name), style = MaterialTheme.typography.bodySmall)
    if (partial) {
        Text(stringResource(R.string.table_exists))
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(onClick = { model.startProfile(resume = true) }, enabled = ready) {
                Text(stringResource(R.string.resume))
            }
            OutlinedButton(onClick = { model.startProfile(resume = false) }, enabled = ready) {
                Text(stringResource(R.string.start_over))
            }
        }
    } else {
        Button(onClick = { model.startProfile(resume = false) }, enabled = ready, modifier = Modifier.fillMaxWidth()) {
            Text(stringResource(R.string.profile_device))
        }
    }
}

@Composable
private fun RunningCard(state: ProfileState.Running, onCancel: () -> Unit) {
    Card(Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp), verticalArrangement = Arrangement.spacedBy(6.dp)) {
            if (state.total > 0) {
                LinearProgressIndicator(progress = { state.fraction }, modifier = Modifier.fillMaxWidth())
                Text(stringResource(R.string.progress_steps, state.done, state.total))
            } else {
                LinearProgressIndicator(modifier = Modifier.fillMaxWidth())
            }
            Text(state.step, style = MaterialTheme.typography.bodySmall)
            Text(stringResource(R.string.progress_eta, Format.duration(state.etaSeconds)))
            Text(stringResource(R.string.progress_hint), style = MaterialTheme.typography.bodySmall)
            OutlinedButton(onClick = onCancel) { Text(stringResource(R.string.cancel)) }
        }
    }
}

@Composable
private fun ResultCard(title: String, lines: List<String>, share: File?) {
    val context = LocalContext.current
    Card(Modifier.fillMaxWidth()) {
        Column(Modifier.padding(12.dp)) {
            Text(title, style = MaterialTheme.typography.titleMedium)
            for (line in lines) Text(line, style = MaterialTheme.typography.bodySmall)
            if (share != null) {
                Button(onClick = { shareTable(context, share) }) { Text(stringResource(R.string.share)) }
            }
        }
    }
}

@Composable
fun ErrorCard(message: String) {
    Card(
        Modifier.fillMaxWidth(),
        colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.errorContainer),
    ) {
        Text(message, Modifier.padding(12.dp))
    }
}

@Composable
private fun SavedTables(tables: List<File>) {
    if (tables.isEmpty()) return
    val context = LocalContext.current
    Section(stringResource(R.string.saved_tables)) {
        for (f in tables) {
            Row(verticalAlignment = Alignment.CenterVertically) {
                Text(f.name, Modifier.weight(1f), style = MaterialTheme.typography.bodySmall)
                TextButton(onClick = { shareTable(context, f) }) { Text(stringResource(R.string.share)) }
            }
        }
    }
}

@Composable
fun Section(title: String, content: @Composable () -> Unit) {
    Column {
        Text(title, style = MaterialTheme.typography.titleSmall)
        content()
    }
}

@Composable
fun Choice(label: String, selected: Boolean, enabled: Boolean = true, onSelect: () -> Unit) {
    Row(
        Modifier.fillMaxWidth().selectable(selected, enabled = enabled, role = Role.RadioButton, onClick = onSelect),
        verticalAlignment = Alignment.CenterVertically,
    ) {
        RadioButton(selected = selected, onClick = null, enabled = enabled)
        Text(label)
    }
}

@Composable
private fun Check(label: String, checked: Boolean, enabled: Boolean, onChange: (Boolean) -> Unit) {
    Row(
        Modifier.fillMaxWidth().toggleable(checked, enabled = enabled, role = Role.Checkbox, onValueChange = onChange),
        verticalAlignment = Alignment.CenterVertically,
    ) {
        Checkbox(checked = checked, onCheckedChange = null, enabled = enabled)
        Text(label)
    }
}
