import Foundation
import Glibc

/// Polls `condition` every few milliseconds until it holds or `seconds` pass
/// (a hang guard, never a pass/fail on speed). Returns the last answer.
@discardableResult
public func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        if condition() { return true }
        if Date() >= deadline { return false }
        usleep(2_000)
    }
}
