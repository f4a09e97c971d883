// What the platform says about this phone: the description stored in every table.
import Foundation

enum DeviceInfo {
    /// The hardware identifier (`iPhone16,1`); the simulator reports the simulated device's.
    static func machineIdentifier() -> String {
        if let simulated = ProcessInfo.processInfo.environment["SIMULATOR_MODEL_IDENTIFIER"] {
            return simulated
        }
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    static func meta() -> DeviceMeta {
        let id = machineIdentifier()
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return DeviceMeta(
            model: id,
            soc: "",
            cpu: "Apple \(id)",
            cores: UInt32(ProcessInfo.processInfo.activeProcessorCount),
            os: "iOS \(v.majorVersion).\(v.minorVersion).\(v.patchVersion)",
            abi: "arm64"
        )
    }
}

/// A table's file name: `<space>-<model>-t<threads>.json`, made file-safe (as the Android app names it).
enum Tables {
    static let folder = "tables"

    /// A quick (rough) table gets `-quick`, so it never replaces or continues a full one.
    static func fileName(space: String, deviceModel: String, threads: Int, quick: Bool) -> String {
        "\(slug(space, fallback: "space"))-\(slug(deviceModel, fallback: "device"))-t\(threads)\(quick ? "-quick" : "").json"
    }

    /// Lower-case letters, digits, "." and "_" kept; every other run of characters becomes one "-".
    static func slug(_ text: String, fallback: String) -> String {
        var out = ""
        for c in text.lowercased() {
            if c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "_") {
                out.append(c)
            } else if !out.isEmpty && out.last != "-" {
                out.append("-")
            }
        }
        let trimmed = out.trimmingCharacters(in: CharacterSet(charactersIn: "-."))
        return trimmed.isEmpty ? fallback : trimmed
    }
}
