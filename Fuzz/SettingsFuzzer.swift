// libFuzzer target for the configuration parsers: the setting parsers of GatewayCLI
// (SettingParsers.int/host/listen/bool/cidrs/upstream and the named settings poller,
// role, push_overflow, log_format, log_level) and the hot restart's control-socket
// lines (HandoverLine). Built with swiftc by Tools/fuzz.sh together with copies of
// the real files (their `import GatewayCore` removed: one module), never by SwiftPM.
//
// Byte 0 chooses the parser (byte 0 % 9) and a variant (byte 0 / 9: which key, or
// the default key); the rest is the setting's text. List settings (listen, allow/deny,
// upstream) take the rest as items (a YAML list, repeated flags) separated by 0xFF.
// Checks for every input, besides never trapping:
//  - a ConfigError names the key passed in (or the parser's own key by default);
//  - int: the value is inside the range, its decimal text and the range's bounds parse
//    to themselves; for ASCII text, accepted exactly when it is [+-]digits within the
//    range after trimming whitespace;
//  - host, listen, upstream: hosts are address text only (no NUL or other byte an
//    address cannot hold), ports in range; each value's description parses again to
//    the same value, and the whole list rendered as "a,b,..." to the same list; for
//    ASCII text, accepted exactly when every part is an address (dotted quad, or for
//    listen a bracketed IPv6 address) and a port, after an optional `tls://` (or, for
//    listen, inside `ws://ADDR:PORT/PATH`);
//  - cidrs: every network contains its own network address, its description parses
//    again to it, and no text holding a NUL is accepted;
//  - bool and the named settings: accepted exactly when the text is one of the
//    documented spellings (true/on/yes/1, false/off/no/0; the raw values), any case,
//    surrounded by whitespace only; each spelling, in upper case and padded, parses;
//  - HandoverLine: a line longer than maxLength is refused; a parsed line x renders
//    (x.text) to exactly the input, byte for byte, and parses again to x; an ASCII line
//    parses as the grammar of docs/OPERATIONS.md says (single spaces, numbers in range
//    written without leading zeros); a value built from the input (mode 8) renders to
//    a line that parses back to it exactly when its numbers are in range.

import Foundation
import Glibc
import Logging

private let modes = 9

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = selfCheck
    guard size > 0 else { return 0 }
    let mode = Int(data[0]) % modes, variant = Int(data[0]) / modes
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch mode {
    case 0: fuzzInt(rest)
    case 1: fuzzHost(rest, variant: variant)
    case 2: fuzzListen(rest, variant: variant)
    case 3: fuzzBool(rest, variant: variant)
    case 4: fuzzCIDRs(rest, variant: variant)
    case 5: fuzzUpstream(rest)
    case 6: fuzzNamed(rest, variant: variant)
    case 7: fuzzHandoverParse(rest)
    default: fuzzHandoverRender(rest)
    }
    return 0
}

// MARK: - helpers

private func text(_ bytes: some Collection<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

/// The items of a list setting: the bytes split at 0xFF (never valid UTF-8, so never inside an item).
private func items(_ bytes: [UInt8]) -> [String] {
    bytes.split(separator: 0xFF, omittingEmptySubsequences: false).map { text($0) }
}

/// precondition, with its message printed in -O builds too.
private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

private func show(_ s: String) -> String { String(reflecting: s) }
private func show(_ s: [String]) -> String { String(reflecting: s) }

/// Runs a parser; on error checks that it names `key` and returns nil.
private func parsed<T>(_ key: String, _ what: @autoclosure () -> String,
                       _ body: () throws(ConfigError) -> T) -> T? {
    do {
        return try body()
    } catch {
        check(error.key == key, "\(what()): error names key \(show(error.key)), not \(show(key))")
        return nil
    }
}

/// ASCII whitespace as Foundation's `.whitespacesAndNewlines` has it (U+0009...U+000D, U+0020).
private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }

private func trimmed(_ bytes: some Collection<UInt8>) -> ArraySlice<UInt8> {
    var s = ArraySlice(bytes)
    while let b = s.first, isSpace(b) { s.removeFirst() }
    while let b = s.last, isSpace(b) { s.removeLast() }
    return s
}

private func lowered(_ bytes: some Collection<UInt8>) -> String {
    text(bytes.map { (65...90).contains($0) ? $0 + 32 : $0 })
}

private func isASCII(_ bytes: some Collection<UInt8>) -> Bool { bytes.allSatisfy { $0 < 0x80 } }

/// Int(text) as Swift defines it, for ASCII: an optional sign, then at least one digit, fitting in Int.
private func decimal(_ bytes: some Collection<UInt8>) -> Int? {
    var s = ArraySlice(bytes)
    let negative = s.first == UInt8(ascii: "-")
    if s.first == UInt8(ascii: "-") || s.first == UInt8(ascii: "+") { s.removeFirst() }
    guard !s.isEmpty else { return nil }
    var magnitude: UInt64 = 0
    for b in s {
        guard (48...57).contains(b) else { return nil }
        let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
        let (m2, o2) = m1.addingReportingOverflow(UInt64(b - 48))
        guard !o1, !o2 else { return nil }
        magnitude = m2
    }
    if negative { return magnitude == 1 << 63 ? Int.min : magnitude < 1 << 63 ? -Int(magnitude) : nil }
    return magnitude <= UInt64(Int.max) ? Int(magnitude) : nil
}

/// What glibc's inet_pton(AF_INET) accepts: four decimal octets 0...255, no leading zeros.
private func isDottedQuad(_ bytes: some Collection<UInt8>) -> Bool {
    let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    return parts.count == 4 && parts.allSatisfy { part in
        (1...3).contains(part.count) && part.allSatisfy { (48...57).contains($0) }
            && (part.count == 1 || part.first != 48) && decimal(part)! <= 255
    }
}

private func inetPton6(_ bytes: some Collection<UInt8>) -> Bool {
    guard !bytes.contains(0) else { return false }
    var raw = (UInt64(0), UInt64(0))
    return withUnsafeMutableBytes(of: &raw) { inet_pton(AF_INET6, text(bytes), $0.baseAddress) } == 1
}

/// The bytes an address's text can hold (hex digits, '.', ':').
private func isAddressText(_ s: String) -> Bool {
    !s.isEmpty && s.utf8.allSatisfy { b in
        (48...57).contains(b) || (65...70).contains(b) || (97...102).contains(b) || b == 46 || b == 58
    }
}

/// Without whitespace at either end, the text is ASCII (no look-alike of a spelling is accepted).
/// Whitespace as Foundation trims it: Unicode White_Space and U+200B (checked over all scalars).
private func asciiInside(_ s: String) -> Bool {
    func space(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace || c == "\u{200B}" }
    var scalars = Substring(s).unicodeScalars
    while let c = scalars.first, space(c) { scalars.removeFirst() }
    while let c = scalars.last, space(c) { scalars.removeLast() }
    return scalars.allSatisfy(\.isASCII)
}

// MARK: - int

private func fuzzInt(_ bytes: [UInt8]) {
    var input = bytes[...]
    let ranges = GatewayConfig.ranges
    let pick = Int(input.popFirst() ?? 0) % (ranges.count + 1)
    let key: String, range: ClosedRange<Int>
    if pick < ranges.count {
        (key, range) = (ranges[pick].key, ranges[pick].range)
    } else {
        func int64() -> Int { (0..<8).reduce(0) { acc, _ in acc << 8 | Int(input.popFirst() ?? 0) } }
        let a = int64(), b = int64()
        (key, range) = ("custom_key", min(a, b)...max(a, b))
    }
    let source = text(input)
    let value = parsed(key, "int \(show(source)) in \(range)") { () throws(ConfigError) in
        try SettingParsers.int(source, key: key, range: range)
    }
    if let value {
        check(range.contains(value), "int \(show(source)) gave \(value), outside \(range)")
        let again = parsed(key, "int \(value)") { () throws(ConfigError) in
            try SettingParsers.int(String(value), key: key, range: range)
        }
        check(again == value, "int: \(value) rendered parses as \(String(describing: again))")
    }
    if isASCII(input) {
        let model = decimal(trimmed(input)).flatMap { range.contains($0) ? $0 : nil }
        check(value == model, "int \(show(source)) in \(range): \(String(describing: value)), expected \(String(describing: model))")
    }
    for bound in [range.lowerBound, range.upperBound] {
        let v = parsed(key, "int bound \(bound)") { () throws(ConfigError) in
            try SettingParsers.int(" \(bound)\n", key: key, range: range)
        }
        check(v == bound, "int: bound \(bound) of \(range) parses as \(String(describing: v))")
    }
}

// MARK: - host

private func fuzzHost(_ bytes: [UInt8], variant: Int) {
    let source = text(bytes)
    let useDefault = variant % 2 == 0
    let key = useDefault ? "host" : "admin_host"
    let host = parsed(key, "host \(show(source))") { () throws(ConfigError) in
        try useDefault ? SettingParsers.host(source) : SettingParsers.host(source, key: key)
    }
    if let host {
        check(isAddressText(host) && !source.utf8.contains(0), "host \(show(source)) accepted as \(show(host))")
        check(host == source.trimmingCharacters(in: .whitespacesAndNewlines), "host \(show(source)) -> \(show(host))")
        let again = parsed(key, "host \(show(host))") { () throws(ConfigError) in try SettingParsers.host(host, key: key) }
        check(again == host, "host \(show(host)) reparses as \(String(describing: again))")
        let network = CIDR(parsing: host)
        check(network?.family == 4 && network?.prefix == 32, "host \(show(host)) is not one IPv4 address")
    }
    if isASCII(bytes) {
        let model = isDottedQuad(trimmed(bytes))
        check((host != nil) == model, "host \(show(source)): \(host == nil ? "refused" : "accepted"), expected otherwise")
    }
}

// MARK: - listen

private func fuzzListen(_ bytes: [UInt8], variant: Int) {
    let list = items(bytes)
    let useDefault = variant % 2 == 0
    let key = useDefault ? "listen" : "admin_listen"
    let addresses = parsed(key, "listen \(show(list))") { () throws(ConfigError) in
        try useDefault ? SettingParsers.listen(list) : SettingParsers.listen(list, key: key)
    }
    if let addresses {
        for a in addresses {
            check((0...65535).contains(a.port), "listen \(show(list)): port \(a.port)")
            check(isAddressText(a.host), "listen \(show(list)): host \(show(a.host))")
            let again = parsed(key, "listen \(show(a.description))") { () throws(ConfigError) in
                try SettingParsers.listen([a.description], key: key)
            }
            check(again == [a], "listen \(show(list)): \(a) reparses as \(String(describing: again))")
        }
        let joined = addresses.map(\.description).joined(separator: ",")
        let again = parsed(key, "listen \(show(joined))") { () throws(ConfigError) in
            try SettingParsers.listen([joined], key: key)
        }
        check(again == addresses, "listen \(show(list)) -> \(show(joined)) -> \(String(describing: again))")
    }
    if isASCII(bytes) {
        let model = parts(bytes).allSatisfy { part in
            guard let address = listenAddressPart(part), let colon = address.lastIndex(of: UInt8(ascii: ":")),
                  let port = decimal(address[(colon + 1)...]), (0...65535).contains(port) else { return false }
            var host = address[..<colon]
            let bracketed = host.first == UInt8(ascii: "[") && host.last == UInt8(ascii: "]") && host.count >= 2
            if bracketed { host = host.dropFirst().dropLast() }
            return bracketed ? !host.contains(UInt8(ascii: "/")) && inetPton6(host) : isDottedQuad(host)
        }
        check((addresses != nil) == model,
                     "listen \(show(list)): \(addresses == nil ? "refused" : "accepted"), expected otherwise")
    }
}

/// The ADDR:PORT of one listen item: after `tls://` (any case), or between `ws://` and a path of visible
/// ASCII other than `?` and `#`; nil for a `ws://` item without such a path.
private func listenAddressPart(_ part: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
    if lowered(part.prefix(6)) == "tls://" { return part.dropFirst(6) }
    guard part.starts(with: "ws://".utf8) else { return part }
    let rest = part.dropFirst(5)
    guard let slash = rest.firstIndex(of: UInt8(ascii: "/")),
          rest[slash...].allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x3F && $0 != 0x23 }) else { return nil }
    return rest[..<slash]
}

/// The non-empty trimmed parts of an ASCII list setting (items split at 0xFF, then at commas).
private func parts(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    bytes.split(separator: 0xFF, omittingEmptySubsequences: false)
        .flatMap { $0.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) }
        .map { trimmed($0) }.filter { !$0.isEmpty }
}

// MARK: - bool

private let spellings: [(String, Bool)] = [("true", true), ("on", true), ("yes", true), ("1", true),
                                           ("false", false), ("off", false), ("no", false), ("0", false)]

private func fuzzBool(_ bytes: [UInt8], variant: Int) {
    let keys = ["proxy_protocol", "admin_public", "k"]
    let key = keys[variant % keys.count]
    let source = text(bytes)
    let value = parsed(key, "bool \(show(source))") { () throws(ConfigError) in try SettingParsers.bool(source, key: key) }
    if value != nil {
        check(asciiInside(source), "bool \(show(source)) accepted: not a documented spelling")
    }
    if isASCII(bytes) {
        let word = lowered(trimmed(bytes))
        let model = spellings.first { $0.0 == word }?.1
        check(value == model, "bool \(show(source)): \(String(describing: value)), expected \(String(describing: model))")
    }
}

// MARK: - cidrs

private func fuzzCIDRs(_ bytes: [UInt8], variant: Int) {
    let keys = ["allow", "deny"]
    let key = keys[variant % keys.count]
    let list = items(bytes)
    guard let networks = parsed(key, "cidrs \(show(list))", { () throws(ConfigError) in
        try SettingParsers.cidrs(list, key: key)
    }) else { return }
    check(!bytes.contains(0), "cidrs \(show(list)) accepted text holding a NUL: \(networks)")
    for n in networks {
        let own = PeerAddress(family: n.family, port: 0, bytes: CIDR.raw(n.bits))
        check(n.contains(own), "cidrs \(show(list)): \(n) does not contain its own address")
        let again = parsed(key, "cidrs \(show(n.description))") { () throws(ConfigError) in
            try SettingParsers.cidrs([n.description], key: key)
        }
        check(again == [n], "cidrs \(show(list)): \(n) reparses as \(String(describing: again))")
    }
    let joined = networks.map(\.description).joined(separator: ",")
    let again = parsed(key, "cidrs \(show(joined))") { () throws(ConfigError) in try SettingParsers.cidrs([joined], key: key) }
    check(again == networks, "cidrs \(show(list)) -> \(show(joined)) -> \(String(describing: again))")
}

// MARK: - upstream

private func fuzzUpstream(_ bytes: [UInt8]) {
    let list = items(bytes)
    let servers = parsed("upstream", "upstream \(show(list))") { () throws(ConfigError) in try SettingParsers.upstream(list) }
    if let servers {
        for s in servers {
            check((1...65535).contains(s.port), "upstream \(show(list)): port \(s.port)")
            check(isAddressText(s.host), "upstream \(show(list)): host \(show(s.host))")
            let again = parsed("upstream", "upstream \(show(s.description))") { () throws(ConfigError) in
                try SettingParsers.upstream([s.description])
            }
            check(again == [s], "upstream \(show(list)): \(s) reparses as \(String(describing: again))")
        }
        let joined = servers.map(\.description).joined(separator: ",")
        let again = parsed("upstream", "upstream \(show(joined))") { () throws(ConfigError) in
            try SettingParsers.upstream([joined])
        }
        check(again == servers, "upstream \(show(list)) -> \(show(joined)) -> \(String(describing: again))")
    }
    if isASCII(bytes) {
        let model = parts(bytes).allSatisfy { whole in
            let part = lowered(whole.prefix(6)) == "tls://" ? whole.dropFirst(6) : whole
            guard let colon = part.lastIndex(of: UInt8(ascii: ":")),
                  let port = decimal(part[(colon + 1)...]), (1...65535).contains(port) else { return false }
            return isDottedQuad(part[..<colon])
        }
        check((servers != nil) == model,
                     "upstream \(show(list)): \(servers == nil ? "refused" : "accepted"), expected otherwise")
    }
}

// MARK: - named settings

private func fuzzNamed(_ bytes: [UInt8], variant: Int) {
    let key: String? = variant % 2 == 0 ? nil : "other_key"
    named(PollerKind.self, bytes, key: key)
    named(GatewayRole.self, bytes, key: key)
    named(PushOverflow.self, bytes, key: key)
    named(LogFormat.self, bytes, key: key)
    named(Logger.Level.self, bytes, key: key)
}

private func named<T: NamedSetting & Equatable>(_ type: T.Type, _ bytes: [UInt8], key: String?) {
    let source = text(bytes)
    let expectedKey = key ?? T.settingKey
    let value = parsed(expectedKey, "\(T.self) \(show(source))") { () throws(ConfigError) in
        if let key { try T(parsing: source, key: key) } else { try T(parsing: source) }
    }
    if value != nil {
        check(asciiInside(source), "\(T.self) \(show(source)) accepted: not one of \(T.allowedNames)")
    }
    if isASCII(bytes) {
        let word = lowered(trimmed(bytes))
        let model = T.allCases.first { $0.rawValue == word }
        check(value == model, "\(T.self) \(show(source)): \(String(describing: value)), expected \(String(describing: model))")
    }
}

// MARK: - HandoverLine

/// The grammar, for ASCII lines: single spaces, numbers in range without leading zeros (or a sign).
private func handoverModel(_ bytes: [UInt8]) -> HandoverLine? {
    guard bytes.count <= HandoverLine.maxLength else { return nil }
    let refused = Array("REFUSED ".utf8)
    if bytes.starts(with: refused) { return .refused(text(bytes[refused.count...])) }
    let words = bytes.split(separator: 0x20, omittingEmptySubsequences: false).map { text($0) }
    func number(_ s: String, _ range: ClosedRange<Int>) -> Int? {
        guard !s.isEmpty, s.utf8.allSatisfy({ (48...57).contains($0) }), s == "0" || s.utf8.first != 48,
              let n = decimal(s.utf8), range.contains(n) else { return nil }
        return n
    }
    switch (words.first, words.count) {
    case ("TAKEOVER", 2): return number(words[1], 1...1000).map { .takeOver(version: $0) }
    case ("LISTENERS", 4) where words[2] == "GENERATION":
        guard let n = number(words[1], 1...HandoverLine.maxListeners), let g = number(words[3], 0...Int(UInt32.max))
        else { return nil }
        return .listeners(count: n, generation: UInt32(g))
    case ("STARTED", 1): return .started
    case ("DRAINING", 2): return number(words[1], 0...604_800).map { .draining(seconds: $0) }
    default: return nil
    }
}

private func fuzzHandoverParse(_ bytes: [UInt8]) {
    let line = text(bytes)
    let value = HandoverLine(parsing: line)
    if line.utf8.count > HandoverLine.maxLength {
        check(value == nil, "a line of \(line.utf8.count) bytes (over \(HandoverLine.maxLength)) parsed")
    }
    if let value {
        check(value.text.utf8.elementsEqual(line.utf8),
                     "HandoverLine \(show(line)) parses as \(value), which renders as \(show(value.text))")
        check(HandoverLine(parsing: value.text) == value, "HandoverLine \(value): \(show(value.text)) does not parse back")
    }
    if isASCII(bytes) {
        let model = handoverModel(bytes)
        check(value == model, "HandoverLine \(show(line)): \(String(describing: value)), expected \(String(describing: model))")
    }
}

private func fuzzHandoverRender(_ bytes: [UInt8]) {
    var input = bytes[...]
    func int32() -> Int { Int(Int32(bitPattern: (0..<4).reduce(0) { acc, _ in acc << 8 | UInt32(input.popFirst() ?? 0) })) }
    let value: HandoverLine, valid: Bool
    switch Int(input.popFirst() ?? 0) % 5 {
    case 0:
        let v = int32() % 2048
        (value, valid) = (.takeOver(version: v), (1...1000).contains(v))
    case 1:
        let n = int32() % 128, g = UInt32(truncatingIfNeeded: int32())
        (value, valid) = (.listeners(count: n, generation: g), (1...HandoverLine.maxListeners).contains(n))
    case 2:
        (value, valid) = (.started, true)
    case 3:
        let s = int32() % 1_000_000
        (value, valid) = (.draining(seconds: s), (0...604_800).contains(s))
    default:
        let why = text(input.map { 32 + $0 % 95 })  // printable ASCII
        (value, valid) = (.refused(why), "REFUSED ".utf8.count + why.utf8.count <= HandoverLine.maxLength)
    }
    let back = HandoverLine(parsing: value.text)
    check(back == (valid ? value : nil), "\(value) renders as \(show(value.text)), which parses as \(String(describing: back))")
}

// MARK: - once

/// Every documented spelling of every parser, in upper case and padded, is accepted (run once).
private let selfCheck: Void = {
    for (word, truth) in spellings {
        for form in [word, " \(word.uppercased())\t", "\n\(word.capitalized) "] {
            check((try? SettingParsers.bool(form, key: "k")) == truth, "bool \(show(form)) is not \(truth)")
        }
    }
    func all<T: NamedSetting & Equatable>(_ type: T.Type) {
        for c in T.allCases {
            for form in [c.rawValue, " \(c.rawValue.uppercased())\r\n"] {
                check((try? T(parsing: form)) == c, "\(T.self) \(show(form)) is not \(c)")
            }
        }
    }
    all(PollerKind.self); all(GatewayRole.self); all(PushOverflow.self); all(LogFormat.self); all(Logger.Level.self)
    for line in ["TAKEOVER 1", "LISTENERS 2 GENERATION 7", "LISTENERS 64 GENERATION 4294967295", "STARTED",
                 "DRAINING 3600", "DRAINING 0", "REFUSED already handed over"] {
        check(HandoverLine(parsing: line)?.text == line, "HandoverLine \(show(line)) does not round-trip")
    }
}()
