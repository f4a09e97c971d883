// The state of both screens and the calls into mobile-core (the uniffi bindings in Generated/mobile_core.swift).
// mobile-core's calls block for seconds to hours: they run on threads of their own (not Swift
// concurrency's shared pool, which a blocked task would starve) and their results come back to the main
// actor.
import Foundation
import UIKit

/// A profile's progress as the screen shows it.
enum ProfileState {
    case idle
    case running(ProfileProgress?)
    case finished(ProfileResult)
    case failed(String)
    /// Stopped on request, or because the app left the foreground (`inBackground`: a backgrounded app
    /// runs on slowed or suspended cores, so the profile stops rather than record those timings); what
    /// was measured stays in the table and a later profile resumes from it.
    case cancelled(path: String, inBackground: Bool)

    var isRunning: Bool {
        if case .running = self { return true }
        return false
    }
}

enum RuntimeStatus {
    case loading
    case ready(version: String, core: String)
    case unavailable(String)
}

/// Runs a blocking call on a thread of its own.
func onOwnThread(_ work: @escaping @Sendable () -> Void) {
    let thread = Thread(block: work)
    thread.qualityOfService = .userInitiated
    thread.start()
}

/// Receives progress on mobile-core's profiling thread and hands it on.
final class ProgressRelay: ProfileListener, @unchecked Sendable {
    private let handler: (ProfileProgress) -> Void

    init(_ handler: @escaping (ProfileProgress) -> Void) {
        self.handler = handler
    }

    func onProgress(progress: ProfileProgress) {
        handler(progress)
    }
}

/// The description an exported model carries (`fbnet export`'s metadata), as much as the screen shows.
struct ModelDescription: Decodable {
    struct Prediction: Decodable {
        let lut: String
        let device: String
        let threads: Int
        /// Predicted µs per dtype; the JSON holds `[["fp32", 1234.5], …]`.
        let latencyUs: [String: Double]

        private enum Keys: String, CodingKey { case lut, device, threads, latencyUs = "latency_us" }

        private struct Pair: Decodable {
            let dtype: String
            let us: Double
            init(from decoder: Decoder) throws {
                var c = try decoder.unkeyedContainer()
                dtype = try c.decode(String.self)
                us = try c.decode(Double.self)
            }
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            lut = try c.decodeIfPresent(String.self, forKey: .lut) ?? ""
            device = try c.decodeIfPresent(String.self, forKey: .device) ?? ""
            threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? 0
            let pairs = try c.decodeIfPresent([Pair].self, forKey: .latencyUs) ?? []
            latencyUs = Dictionary(pairs.map { ($0.dtype, $0.us) }, uniquingKeysWith: { a, _ in a })
        }
    }

    let name: String
    let arch: String
    let space: String
    let dtype: String
    let labels: [String]
    let inputShape: [Int]
    let dataset: String
    let accuracy: Double?
    let prediction: Prediction?

    private enum Keys: String, CodingKey {
        case name, arch, space, dtype, labels, dataset, accuracy, prediction
        case inputShape = "input_shape"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
        arch = try c.decodeIfPresent(String.self, forKey: .arch) ?? ""
        space = try c.decodeIfPresent(String.self, forKey: .space) ?? ""
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? ""
        labels = try c.decodeIfPresent([String].self, forKey: .labels) ?? []
        inputShape = try c.decodeIfPresent([Int].self, forKey: .inputShape) ?? []
        dataset = try c.decodeIfPresent(String.self, forKey: .dataset) ?? ""
        accuracy = try c.decodeIfPresent(Double.self, forKey: .accuracy)
        prediction = try c.decodeIfPresent(Prediction.self, forKey: .prediction)
    }

    var predictedUs: Double? { prediction?.latencyUs[dtype] }
}

@MainActor
final class AppModel: ObservableObject {
    static let spaces = ["fbnet-224", "fbnet-small"]
    static let allDtypes = ["fp32", "int8"]

    let device = DeviceInfo.meta()
    let tablesDir: URL

    @Published private(set) var runtime: RuntimeStatus = .loading

    // Profile device
    @Published var space = "fbnet-224"
    @Published var dtypes: Set<String> = ["fp32", "int8"]
    @Published var threads = 1
    @Published var quick = false
    @Published private(set) var profileState: ProfileState = .idle
    @Published private(set) var tables: [URL] = []
    @Published private(set) var thermalState = ProcessInfo.processInfo.thermalState
    @Published private(set) var lowPower = ProcessInfo.processInfo.isLowPowerModeEnabled
    @Published private(set) var charging = false
    private var profiler: Profiler?

    // Load model
    @Published var modelThreads = 1
    @Published private(set) var modelName: String?
    @Published private(set) var modelInfo: ModelDescription?
    @Published private(set) var bench: BenchResult?
    /// The table to predict with; nil: the one recorded in the model.
    @Published var benchTable: URL?
    @Published private(set) var photo: UIImage?
    @Published private(set) var classes: [ClassScore] = []
    @Published private(set) var modelBusy: String?
    @Published private(set) var modelError: String?
    private var runner: ModelRunner?

    private var observers: [NSObjectProtocol] = []

    init() {
        // Documents/tables: visible in the Files app (UIFileSharingEnabled) as well as through Share.
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        tablesDir = documents.appendingPathComponent(Tables.folder, isDirectory: true)
        refreshTables()
        loadRuntime()
        watchConditions()
    }

    var tableURL: URL {
        tablesDir.appendingPathComponent(
            Tables.fileName(space: space, deviceModel: device.model, threads: threads, quick: quick))
    }

    // MARK: Runtime

    /// The ONNX Runtime binary to hand to mobile-core, which loads it with dlopen (ort's load-dynamic):
    /// an embedded dynamic onnxruntime.framework when there is one, else the app's own executable, into
    /// which the static framework of the onnxruntime-c pod is linked (with OrtGetApiBase exported; see
    /// project.yml and README.md).
    static func ortLibraryPath() -> String? {
        if let frameworks = Bundle.main.privateFrameworksPath {
            let dynamic = (frameworks as NSString).appendingPathComponent("onnxruntime.framework/onnxruntime")
            if FileManager.default.fileExists(atPath: dynamic) { return dynamic }
        }
        return Bundle.main.executablePath
    }

    func loadRuntime() {
        runtime = .loading
        let path = Self.ortLibraryPath()
        onOwnThread {
            let status: RuntimeStatus
            do {
                let info = try initRuntime(libraryPath: path)
                status = .ready(version: info.version, core: coreVersion())
            } catch {
                status = .unavailable(describe(error))
            }
            Task { @MainActor [weak self] in self?.runtime = status }
        }
    }

    private var runtimeReady: Bool {
        if case .ready = runtime { return true }
        return false
    }

    // MARK: Conditions

    private func watchConditions() {
        UIDevice.current.isBatteryMonitoringEnabled = true
        updateConditions()
        let center = NotificationCenter.default
        for name in [
            ProcessInfo.thermalStateDidChangeNotification,
            Notification.Name.NSProcessInfoPowerStateDidChange,
            UIDevice.batteryStateDidChangeNotification,
        ] {
            observers.append(center.addObserver(forName: name, object: nil, queue: .main) { [weak self] _ in
                Task { @MainActor in self?.updateConditions() }
            })
        }
    }

    private func updateConditions() {
        thermalState = ProcessInfo.processInfo.thermalState
        lowPower = ProcessInfo.processInfo.isLowPowerModeEnabled
        let battery = UIDevice.current.batteryState
        charging = battery == .charging || battery == .full
    }

    /// Serious or critical: the system is throttling.
    var hot: Bool { thermalState == .serious || thermalState == .critical }

    // MARK: Profile

    func refreshTables() {
        let files = (try? FileManager.default.contentsOfDirectory(
            at: tablesDir, includingPropertiesForKeys: [.contentModificationDateKey]
        )) ?? []
        func modified(_ u: URL) -> Date {
            (try? u.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? .distantPast
        }
        tables = files.filter { $0.pathExtension == "json" }.sorted { modified($0) > modified($1) }
    }

    var tableExists: Bool { tables.contains { $0.lastPathComponent == tableURL.lastPathComponent } }

    func startProfile(resume: Bool) {
        guard !profileState.isRunning, modelBusy == nil else { return }
        guard runtimeReady else {
            profileState = .failed("ONNX Runtime is not loaded")
            return
        }
        let chosen = Self.allDtypes.filter { dtypes.contains($0) }
        guard !chosen.isEmpty else {
            profileState = .failed("Choose at least one precision.")
            return
        }
        let out = tableURL
        do {
            try FileManager.default.createDirectory(at: tablesDir, withIntermediateDirectories: true)
            if !resume && FileManager.default.fileExists(atPath: out.path) {
                try FileManager.default.removeItem(at: out)
            }
        } catch {
            profileState = .failed(error.localizedDescription)
            return
        }
        // Every field in the record's order: uniffi's Swift initialiser has no defaults.
        let request = ProfileRequest(
            space: space,
            resolution: nil,
            width: nil,
            classes: nil,
            inputChannels: nil,
            dtypes: chosen,
            threads: UInt32(threads),
            quick: quick,
            device: device,
            outPath: out.path,
            resume: resume
        )
        let profiler: Profiler
        do {
            profiler = try Profiler(request: request)
        } catch {
            profileState = .failed(describe(error))
            return
        }
        self.profiler = profiler
        leftForeground = false
        profileState = .running(nil)
        // A sleeping phone suspends the app: keep the screen on while profiling.
        UIApplication.shared.isIdleTimerDisabled = true

        let relay = ProgressRelay { [weak self] progress in
            Task { @MainActor in
                guard let self, self.profileState.isRunning else { return }
                self.profileState = .running(progress)
            }
        }
        onOwnThread { [weak self] in
            let end: ProfileState
            do {
                end = .finished(try profiler.run(listener: relay))
            } catch FbnetError.Cancelled {
                end = .cancelled(path: out.path, inBackground: false)
            } catch {
                end = .failed(describe(error))
            }
            Task { @MainActor in
                guard let self else { return }
                self.profiler = nil
                if case .cancelled(let path, _) = end, self.leftForeground {
                    self.profileState = .cancelled(path: path, inBackground: true)
                } else {
                    self.profileState = end
                }
                UIApplication.shared.isIdleTimerDisabled = false
                self.refreshTables()
            }
        }
    }

    /// Stops after the step in flight; what was measured stays in the table.
    func cancelProfile() {
        profiler?.cancel()
    }

    private var leftForeground = false

    /// The scene went to the background: a profile in flight is cancelled (Resume continues it), since
    /// timings taken in the background are not the phone's.
    func appLeftForeground() {
        guard profileState.isRunning else { return }
        leftForeground = true
        profiler?.cancel()
    }

    // MARK: Model

    func loadModel(from url: URL) {
        let threads = UInt32(modelThreads)
        modelJob("Loading model…") {
            let scoped = url.startAccessingSecurityScopedResource()
            defer { if scoped { url.stopAccessingSecurityScopedResource() } }
            let bytes = try Data(contentsOf: url)
            let runner = try ModelRunner.fromBytes(bytes: bytes, name: url.lastPathComponent, threads: threads)
            let info = try JSONDecoder().decode(ModelDescription.self, from: Data(runner.infoJson().utf8))
            return { model in
                model.runner = runner
                model.modelName = url.lastPathComponent
                model.modelInfo = info
                model.bench = nil
                model.classes = []
                model.photo = nil
            }
        }
    }

    func benchModel() {
        guard let runner else { return }
        let lut = benchTable?.path
        modelJob("Benchmarking…") {
            let result = try runner.bench(warmup: 10, runs: 50, lutPath: lut)
            return { $0.bench = result }
        }
    }

    /// Classifies a photo; formats other than PNG and JPEG (HEIC) are re-encoded as JPEG first.
    func classify(imageData: Data) {
        guard let runner else { return }
        modelJob("Classifying…") {
            let image = UIImage(data: imageData)
            let input: Data
            if Self.isPngOrJpeg(imageData) {
                input = imageData
            } else if let jpeg = image?.jpegData(compressionQuality: 0.95) {
                input = jpeg
            } else {
                throw FbnetError.InvalidInput(message: "the photo cannot be decoded")
            }
            let top = try runner.classify(image: input, topK: 5)
            return { model in
                model.photo = image
                model.classes = top
            }
        }
    }

    /// Runs `work` off the main actor with the screen showing `what`; it returns the update to apply on the
    /// main actor.
    private func modelJob(_ what: String, _ work: @escaping @Sendable () throws -> @MainActor (AppModel) -> Void) {
        // One thing at a time: a model's runs during a profile would disturb its timings.
        guard modelBusy == nil, !profileState.isRunning else { return }
        guard runtimeReady else {
            modelError = "ONNX Runtime is not loaded"
            return
        }
        modelBusy = what
        modelError = nil
        onOwnThread { [weak self] in
            let outcome = Result { try work() }
            Task { @MainActor in
                guard let self else { return }
                self.modelBusy = nil
                switch outcome {
                case .success(let apply): apply(self)
                case .failure(let error): self.modelError = describe(error)
                }
            }
        }
    }

    nonisolated static func isPngOrJpeg(_ d: Data) -> Bool {
        let b = [UInt8](d.prefix(4))
        return b.starts(with: [0x89, 0x50, 0x4E, 0x47]) || b.starts(with: [0xFF, 0xD8, 0xFF])
    }
}

/// A mobile-core error as one line for the screen.
func describe(_ error: Error) -> String {
    guard let e = error as? FbnetError else { return error.localizedDescription }
    switch e {
    case .InvalidInput(let message): return "Invalid input: \(message)"
    case .RuntimeUnavailable(let message): return "ONNX Runtime unavailable: \(message)"
    case .Cancelled: return "Cancelled"
    case .Io(let message): return "File error: \(message)"
    case .Other(let message): return message
    @unknown default: return String(describing: e)
    }
}
