import SwiftUI

/// Two tabs: "Profile device" and "Load model".
struct ContentView: View {
    var body: some View {
        TabView {
            NavigationStack { ProfileView() }
                .tabItem { Label("Profile device", systemImage: "speedometer") }
            NavigationStack { ModelView() }
                .tabItem { Label("Load model", systemImage: "cpu") }
        }
    }
}

/// Which ONNX Runtime and mobile-core the app runs, or why it cannot.
struct RuntimeRow: View {
    @EnvironmentObject private var model: AppModel

    var body: some View {
        switch model.runtime {
        case .loading:
            Label("Loading ONNX Runtime…", systemImage: "hourglass")
        case .ready(let version, let core):
            Text("ONNX Runtime \(version) · mobile-core \(core)").font(.footnote).foregroundStyle(.secondary)
        case .unavailable(let message):
            VStack(alignment: .leading, spacing: 4) {
                Label("ONNX Runtime could not be loaded", systemImage: "exclamationmark.triangle")
                    .foregroundStyle(.red)
                Text(message).font(.footnote)
                Button("Retry") { model.loadRuntime() }
            }
        }
    }
}

enum Format {
    /// A latency in µs: `850 µs`, `12.3 ms`, `1.25 s`.
    static func micros(_ us: Double?) -> String {
        guard let us, us.isFinite else { return "—" }
        switch us {
        case ..<1_000: return String(format: "%.0f µs", us)
        case ..<100_000: return String(format: "%.1f ms", us / 1_000)
        case ..<1_000_000: return String(format: "%.0f ms", us / 1_000)
        default: return String(format: "%.2f s", us / 1_000_000)
        }
    }

    /// `42 s`, `3 min 05 s`, `1 h 02 min`; unknown or negative: `—`.
    static func duration(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite, seconds >= 0 else { return "—" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s) s" }
        if s < 3_600 { return String(format: "%d min %02d s", s / 60, s % 60) }
        return String(format: "%d h %02d min", s / 3_600, (s % 3_600) / 60)
    }

    static func percent(_ fraction: Double) -> String { String(format: "%.1f%%", fraction * 100) }

    static func ratio(_ r: Double?) -> String {
        guard let r, r.isFinite else { return "—" }
        return String(format: "×%.2f", r)
    }
}
