/// Several processes' Prometheus text expositions as one, for a master's /metrics: every sample gets a
/// label naming its process (`worker="1"`), and each family keeps one HELP and one TYPE line with all
/// its samples after them, as the text format requires.
public enum MetricsMerge {
    private struct Family {
        var help: String?
        var type: String?
        var samples: [String] = []
    }

    /// `parts`: (label value, exposition) per process, in order.
    public static func merge(_ parts: [(value: String, text: String)], label: String) -> String {
        var order: [String] = []
        var families: [String: Family] = [:]
        func touch(_ name: String) {
            if families[name] == nil {
                order.append(name)
                families[name] = Family()
            }
        }
        for (value, text) in parts {
            var current = ""
            for line in text.split(whereSeparator: \.isNewline) {
                if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                    let words = line.split(separator: " ", maxSplits: 3)
                    guard words.count >= 3 else { continue }
                    current = String(words[2])
                    touch(current)
                    if words[1] == "HELP" {
                        families[current]!.help = families[current]!.help ?? String(line)
                    } else {
                        families[current]!.type = families[current]!.type ?? String(line)
                    }
                } else if !line.hasPrefix("#"), let sample = labelled(line, label: label, value: value) {
                    // Samples follow their family's TYPE; one before any belongs to a family of its own name.
                    let name = current.isEmpty ? String(line.prefix { $0 != "{" && $0 != " " }) : current
                    touch(name)
                    families[name]!.samples.append(sample)
                }
            }
        }
        var out = ""
        for name in order {
            let family = families[name]!
            for line in [family.help, family.type].compactMap({ $0 }) + family.samples { out += line + "\n" }
        }
        return out
    }

    /// `name{a="b"} 1` -> `name{label="value",a="b"} 1`; `name 1` -> `name{label="value"} 1`; nil if no sample.
    static func labelled(_ line: Substring, label: String, value: String) -> String? {
        guard let end = line.firstIndex(where: { $0 == "{" || $0 == " " }), end > line.startIndex else { return nil }
        let name = line[..<end]
        let pair = "\(label)=\"\(value)\""
        if line[end] == "{" {
            let rest = line[line.index(after: end)...]
            return rest.hasPrefix("}") ? "\(name){\(pair)\(rest)" : "\(name){\(pair),\(rest)"
        }
        return "\(name){\(pair)}\(line[end...])"
    }
}
