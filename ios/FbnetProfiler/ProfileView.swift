import SwiftUI

struct ProfileView: View {
    @EnvironmentObject private var model: AppModel

    private var running: Bool { model.profileState.isRunning }

    var body: some View {
        Form {
            Section {
                RuntimeRow()
                VStack(alignment: .leading) {
                    Text(model.device.model).font(.headline)
                    Text("\(model.device.cores) cores · \(model.device.abi) · \(model.device.os)")
                        .font(.footnote).foregroundStyle(.secondary)
                }
            }
            conditions
            Section("Search space") {
                Picker("Space", selection: $model.space) {
                    ForEach(AppModel.spaces, id: \.self) { Text($0).tag($0) }
                }
                .pickerStyle(.segmented)
            }
            .disabled(running)
            Section("Precisions") {
                ForEach(AppModel.allDtypes, id: \.self) { dtype in
                    Toggle(dtype, isOn: Binding(
                        get: { model.dtypes.contains(dtype) },
                        set: { on in if on { model.dtypes.insert(dtype) } else { model.dtypes.remove(dtype) } }
                    ))
                }
                Toggle("Quick (fewer runs: a first look)", isOn: $model.quick)
            }
            .disabled(running)
            Section("Threads") {
                Picker("Threads", selection: $model.threads) {
                    ForEach(threadChoices, id: \.self) { Text("\($0)").tag($0) }
                }
                .pickerStyle(.segmented)
            }
            .disabled(running)
            Section { action }
            result
            if !model.tables.isEmpty {
                Section("Saved tables") {
                    ForEach(model.tables, id: \.self) { url in
                        ShareLink(item: url) {
                            Label(url.lastPathComponent, systemImage: "square.and.arrow.up").font(.footnote)
                        }
                    }
                }
            }
        }
        .navigationTitle("Profile device")
    }

    /// 1, 2, 4 and all cores, as far as the phone has them.
    private var threadChoices: [Int] {
        let cores = Int(model.device.cores)
        var choices = [1, 2, 4].filter { $0 <= cores }
        if !choices.contains(cores) { choices.append(cores) }
        return choices
    }

    @ViewBuilder private var conditions: some View {
        if model.hot || model.thermalState == .fair || model.lowPower || model.charging {
            Section {
                if model.hot {
                    Label("The phone is hot and throttling: let it cool down, or the table will read slow.",
                          systemImage: "thermometer.sun")
                } else if model.thermalState == .fair {
                    Label("The phone is warm: timings may drift.", systemImage: "thermometer.medium")
                }
                if model.lowPower {
                    Label("Low Power Mode slows the CPU: turn it off before profiling.", systemImage: "battery.25")
                }
                if model.charging {
                    Label("Charging warms the phone: unplug for steadier timings if the battery allows.",
                          systemImage: "bolt")
                }
            }
            .foregroundStyle(.orange)
        }
    }

    @ViewBuilder private var action: some View {
        switch model.profileState {
        case .running(let progress):
            VStack(alignment: .leading, spacing: 6) {
                if let p = progress, p.total > 0 {
                    ProgressView(value: Double(p.done), total: Double(p.total))
                    Text("\(p.done) of \(p.total) measured")
                    Text(p.step).font(.footnote).foregroundStyle(.secondary)
                    Text("About \(Format.duration(p.etaS)) left")
                } else {
                    ProgressView()
                }
                Text("Keep the app open: the screen stays on. If it is stopped, Resume continues from the last step.")
                    .font(.footnote).foregroundStyle(.secondary)
                Button("Cancel", role: .destructive) { model.cancelProfile() }
            }
        default:
            Text("Table: \(model.tableURL.lastPathComponent)").font(.footnote).foregroundStyle(.secondary)
            if model.tableExists {
                Text("A table for these choices exists. Resume measures only what it lacks; Start over measures everything again.")
                    .font(.footnote)
                Button("Resume") { model.startProfile(resume: true) }
                Button("Start over") { model.startProfile(resume: false) }
            } else {
                Button("Profile device") { model.startProfile(resume: false) }
                    .disabled(model.dtypes.isEmpty)
            }
        }
    }

    @ViewBuilder private var result: some View {
        switch model.profileState {
        case .finished(let r):
            Section("Table ready") {
                Text("\(r.entries) entries, \(r.noisy) noisy, took \(Format.duration(r.seconds))")
                Text(r.path).font(.footnote).foregroundStyle(.secondary)
                ShareLink(item: URL(fileURLWithPath: r.path)) { Label("Share", systemImage: "square.and.arrow.up") }
            }
        case .cancelled(let path, let inBackground):
            Section("Stopped") {
                if inBackground {
                    Text("Stopped because the app left the screen: timings taken in the background are not the phone's.")
                }
                Text("What was measured is kept; Resume continues from there.")
                Text(path).font(.footnote).foregroundStyle(.secondary)
            }
        case .failed(let message):
            Section { Text(message).foregroundStyle(.red) }
        default:
            EmptyView()
        }
    }
}
