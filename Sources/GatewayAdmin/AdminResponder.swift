import Foundation
import GatewayCore
import Hummingbird

/// The admin routes. A responder of its own rather than Hummingbird's router, which answers a known
/// path with the wrong method 404; here that is 405 with the allowed method.
struct AdminResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    private enum Route: String {
        case metrics = "/metrics", healthz = "/healthz", stats = "/stats", drain = "/drain", reload = "/reload"

        var method: HTTPRequest.Method {
            switch self {
            case .metrics, .healthz, .stats: .get
            case .drain, .reload: .post
            }
        }
    }

    let control: any AdminControl
    let metrics: AdminMetrics

    func respond(to request: Request, context: Context) async throws -> Response {
        guard let route = Route(rawValue: request.uri.path) else { return text(.notFound, "no such path") }
        guard request.method == route.method else {
            var response = text(.methodNotAllowed, "use \(route.method)")
            response.headers[.allow] = route.method.rawValue
            return response
        }
        switch route {
        case .metrics:
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render())))
        case .healthz:
            return control.isDraining ? text(.serviceUnavailable, "draining") : text(.ok, "serving")
        case .stats:
            return try json(.ok, Self.statsObject(control.stats()))
        case .drain:
            return control.drain() ? text(.accepted, "draining") : text(.conflict, "already draining")
        case .reload:
            switch control.reload() {
            case .applied(let changed, let needRestart):
                return try json(.ok, ["changed": changed, "need_restart": needRestart])
            case .rejected(let reason):
                return text(.badRequest, reason)
            }
        }
    }

    /// Every GatewayStats field by its name, read by reflection so that a new field appears unasked;
    /// closes keyed by cause and inbox depths keyed by stage.
    static func statsObject(_ stats: GatewayStats) -> [String: Any] {
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

    private func text(_ status: HTTPResponse.Status, _ line: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: line + "\n")))
    }

    private func json(_ status: HTTPResponse.Status, _ object: [String: Any]) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
