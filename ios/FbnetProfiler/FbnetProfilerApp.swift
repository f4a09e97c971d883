import SwiftUI

@main
struct FbnetProfilerApp: App {
    @StateObject private var model = AppModel()
    @Environment(\.scenePhase) private var phase

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environmentObject(model)
        }
        .onChange(of: phase) { phase in
            if phase == .background { model.appLeftForeground() }
        }
    }
}
