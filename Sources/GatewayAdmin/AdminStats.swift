import Foundation
import GatewayCore

/// The JSON of GET /stats for one gateway.
public enum AdminStats {
    /// Every GatewayStats field by its name, read by reflection so that a new field appears unasked;
    /// closes keyed by cause and inbox depths keyed by stage.
    public static func object(_ stats: GatewayStats) -> [String: Any] {
        var object: [String: Any] = [:]
        for child in Mirror(reflecting: stats).children {
            guard let name = child.label else { continue }
            // A field of a type JSON has no form for is written as text, not a crash of the serialiser.
            object[name] = JSONSerialization.isValidJSONObject([child.value]) ? child.value : "\(child.value)"
        }
        object["closes"] = Dictionary(uniqueKeysWithValues: CloseCause.allCases.map {
            ($0.description, stats.closes($0))
        })
        object["inboxDepths"] = Dictionary(uniqueKeysWithValues: zip(GatewayStats.stageNames, stats.inboxDepths))
        return object
    }
}
