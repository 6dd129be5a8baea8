import ArgumentParser
import Foundation

/// How every setting is read: its flag if given, else its environment variable if set and not
/// empty. One place for it, so `serve`, its access flags and `token` read variables alike.
struct FlagFallback {
    let environment: [String: String]

    /// `flag`, else the variable `name`.
    func value(_ flag: String?, _ name: String) -> String? {
        if let flag { return flag }
        guard let text = environment[name], !text.isEmpty else { return nil }
        return text
    }

    /// `flag`, else the variable `name` parsed by `parse`.
    /// - Throws: `ValidationError` naming the variable when its text does not parse.
    func value<T>(_ flag: T?, _ name: String, _ parse: (String) -> T?) throws -> T? {
        if let flag { return flag }
        guard let text = value(nil, name) else { return nil }
        guard let parsed = parse(text) else {
            throw ValidationError("The environment variable \(name)=\(text.debugDescription) is not a valid value.")
        }
        return parsed
    }

    /// `flags` if any were given, else the variable `name` split at commas (parts trimmed, empty
    /// ones dropped).
    func list(_ flags: [String], _ name: String) -> [String] {
        if !flags.isEmpty { return flags }
        return (environment[name] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
