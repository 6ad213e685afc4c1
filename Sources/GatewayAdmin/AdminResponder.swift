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

    let service: any AdminService

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
                            body: ResponseBody(byteBuffer: ByteBuffer(string: service.metrics())))
        case .healthz:
            let (serving, reason) = service.health()
            return text(serving ? .ok : .serviceUnavailable, reason)
        case .stats:
            return try json(.ok, service.statsObject())
        case .drain:
            return service.drain() ? text(.accepted, "draining") : text(.conflict, "already draining")
        case .reload:
            switch service.reload() {
            case .applied(let changed, let needRestart):
                return try json(.ok, ["changed": changed, "need_restart": needRestart])
            case .rejected(let reason):
                return text(.badRequest, reason)
            }
        }
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
