import Glibc

/// A failed socket call, with the call's name and errno, for one clear log line.
public struct SocketError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let code: Int32

    public init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
    }

    public var description: String { "\(call): \(String(cString: strerror(code))) (errno \(code))" }
}
