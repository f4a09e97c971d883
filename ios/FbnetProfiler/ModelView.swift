import PhotosUI
import UIKit
import SwiftUI
import UniformTypeIdentifiers

extension UTType {
    /// Declared in Info.plist (UTImportedTypeDeclarations, project.yml) for the .onnx extension.
    static let onnx = UTType(importedAs: "dev.fbnet.onnx", conformingTo: .data)
}

struct ModelView: View {
    @EnvironmentObject private var model: AppModel
    @State private var importing = false
    @State private var photoItem: PhotosPickerItem?

    /// Loading, benchmarking or classifying, or a profile running (whose timings the model would disturb).
    private var busy: Bool { model.modelBusy != nil || model.profileState.isRunning }

    var body: some View {
        Form {
            Section {
                RuntimeRow()
                Picker("Threads", selection: $model.modelThreads) {
                    ForEach([1, 2, 4].filter { $0 <= Int(model.device.cores) }, id: \.self) { Text("\($0)").tag($0) }
                }
                .pickerStyle(.segmented)
                Button("Load model (.onnx)") { importing = true }
            }
            .disabled(busy)
            if let what = model.modelBusy {
                Section { HStack { ProgressView(); Text(what) } }
            }
            if let error = model.modelError {
                Section { Text(error).foregroundStyle(.red) }
            }
            if let info = model.modelInfo {
                infoSection(info)
                benchSection
                classifySection
            }
        }
        .navigationTitle("Load model")
        .fileImporter(isPresented: $importing, allowedContentTypes: [.onnx, .data]) { result in
            if case .success(let url) = result { model.loadModel(from: url) }
        }
        .task(id: photoItem) {
            guard let item = photoItem,
                  let data = try? await item.loadTransferable(type: Data.self) else { return }
            model.classify(imageData: data)
        }
    }

    private func infoSection(_ info: ModelDescription) -> some View {
        Section(model.modelName ?? info.name) {
            row("Architecture", info.name)
            Text(info.arch).font(.footnote).foregroundStyle(.secondary)
            row("Precision", info.dtype)
            row("Space", info.space)
            row("Input", info.inputShape.map(String.init).joined(separator: "×"))
            row("Labels", "\(info.labels.count)")
            row("Dataset", info.dataset)
            row("Top-1 accuracy (host)", info.accuracy.map(Format.percent) ?? "—")
            if let p = info.prediction {
                row("Predicted latency", Format.micros(info.predictedUs))
                Text("by \(p.lut) (\(p.device), \(p.threads) threads)").font(.footnote).foregroundStyle(.secondary)
            }
        }
    }

    private var benchSection: some View {
        Section("Benchmark") {
            Picker("Predict with", selection: $model.benchTable) {
                Text("The table recorded in the model").tag(URL?.none)
                ForEach(model.tables, id: \.self) { Text($0.lastPathComponent).tag(URL?.some($0)) }
            }
            Button("Benchmark (10 warm-up + 50 runs)") { model.benchModel() }.disabled(busy)
            if let b = model.bench {
                row("Measured (trimmed mean)", Format.micros(b.trimmedMeanUs))
                row("Predicted", Format.micros(b.predictedUs))
                row("Measured / predicted", Format.ratio(b.measuredOverPredicted))
                if let pace = b.speedNow { row("Time now / when the table was made", Format.ratio(pace)) }
                if let now = b.predictedNowUs { row("Predicted at that pace", Format.micros(now)) }
                row("p10 / p50 / p90", [b.p10Us, b.p50Us, b.p90Us].map { Format.micros($0) }.joined(separator: " / "))
                row("Min / mean", "\(Format.micros(b.minUs)) / \(Format.micros(b.meanUs))")
                Text("\(b.runs) runs, \(b.threads) threads, ONNX Runtime \(b.runtime)")
                    .font(.footnote).foregroundStyle(.secondary)
                if let by = b.predictedBy { Text(by).font(.footnote).foregroundStyle(.secondary) }
            }
        }
    }

    private var classifySection: some View {
        Section("Classify") {
            PhotosPicker(selection: $photoItem, matching: .images) { Label("Classify a photo", systemImage: "photo") }
                .disabled(busy)
            if let photo = model.photo {
                Image(uiImage: photo).resizable().scaledToFit().frame(maxHeight: 160)
            }
            ForEach(model.classes, id: \.index) { c in
                row(c.label.isEmpty ? "#\(c.index)" : c.label, Format.percent(Double(c.probability)))
            }
        }
    }

    private func row(_ label: String, _ value: String) -> some View {
        HStack {
            Text(label)
            Spacer()
            Text(value).foregroundStyle(.secondary)
        }
    }
}
