import CLinux

/// The lines of the hand-over protocol on the control socket (docs/OPERATIONS.md), each sent as one
/// message: parsed and written here only, by both sides.
enum HandoverLine: Equatable {
    /// New -> old: the protocol version the new process speaks.
    case takeOver(version: Int)
    /// Old -> new, with the `count` listening sockets attached; `generation` is the old one's.
    case listeners(count: Int, generation: UInt32)
    /// New -> old: serving on them.
    case started
    /// New -> old: serving on them; hand the connections over (--handover connections).
    case startedMoving
    /// Old -> new: connections follow, a batch for each `adopted` (docs/HANDOVER.md).
    case moving
    /// New -> old: `count` connections of the last batch taken (0: none yet); send the next.
    case adopted(count: Int)
    /// Old -> new: stopped accepting, draining over `seconds`.
    case draining(seconds: Int)
    /// Old -> new: no hand-over, and why.
    case refused(String)

    static let version = 1
    /// Longest line either side sends or reads.
    static let maxLength = 256
    /// Most listening sockets one hand-over carries (SCM_RIGHTS takes at most 253 in one message).
    static let maxListeners = Int(GW_MAX_FDS)

    var text: String {
        switch self {
        case .takeOver(let version): "TAKEOVER \(version)"
        case .listeners(let count, let generation): "LISTENERS \(count) GENERATION \(generation)"
        case .started: "STARTED"
        case .startedMoving: "STARTED CONNECTIONS"
        case .moving: "MOVING"
        case .adopted(let count): "ADOPTED \(count)"
        case .draining(let seconds): "DRAINING \(seconds)"
        case .refused(let why): "REFUSED \(why)"
        }
    }

    /// The line, or nil when it is none of the above (numbers in range, single spaces, nothing more).
    init?(parsing line: String) {
        guard line.utf8.count <= Self.maxLength else { return nil }
        let words = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        func number(_ text: String, _ range: ClosedRange<Int>) -> Int? {
            // Digits only, no leading zero: one spelling per line.
            guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), text.utf8.count <= 10,
                  text == "0" || !text.hasPrefix("0"),
                  let n = Int(text), range.contains(n) else { return nil }
            return n
        }
        switch words.first {
        case "TAKEOVER" where words.count == 2:
            guard let v = number(words[1], 1...1_000) else { return nil }
            self = .takeOver(version: v)
        case "LISTENERS" where words.count == 4 && words[2] == "GENERATION":
            guard let n = number(words[1], 1...Self.maxListeners), let g = number(words[3], 0...Int(UInt32.max))
            else { return nil }
            self = .listeners(count: n, generation: UInt32(g))
        case "STARTED" where words.count == 1:
            self = .started
        case "STARTED" where words.count == 2 && words[1] == "CONNECTIONS":
            self = .startedMoving
        case "MOVING" where words.count == 1:
            self = .moving
        case "ADOPTED" where words.count == 2:
            guard let n = number(words[1], 0...Self.maxListeners) else { return nil }
            self = .adopted(count: n)
        case "DRAINING" where words.count == 2:
            guard let s = number(words[1], 0...604_800) else { return nil }
            self = .draining(seconds: s)
        case "REFUSED" where words.count >= 2:
            self = .refused(String(line.dropFirst("REFUSED ".count)))
        default:
            return nil
        }
    }
}
