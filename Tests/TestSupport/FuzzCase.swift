import Foundation

/// One input of the protocol fuzzer: bytes, and where on a connection they are sent.
public struct FuzzCase: Codable, Sendable, CustomStringConvertible {
    /// Where the bytes go: every state a connection to a node can be in.
    public enum Stage: String, Codable, CaseIterable, Sendable {
        /// The first bytes of a new connection: a request head (and what follows it).
        case requestHead
        /// The body of a JSON POST whose head declared its length.
        case requestBody
        /// The body of a POST with `Transfer-Encoding: chunked`: chunk sizes, extensions, trailers.
        case chunkedBody
        /// After a request was answered on a kept-alive connection.
        case afterAnswer
        /// On an open stream of one room, once its opening arrived.
        case stream
        /// On an open stream of several rooms with presence, once its opening arrived.
        case multiRoomStream
        /// In the same write as a stream's request, behind it.
        case pipelinedBehindStream
        /// On a stream the node ends after its opening (a replay cut at its limit).
        case afterStreamEnded
    }

    /// How the client leaves once the bytes are sent.
    public enum Ending: String, Codable, Sendable {
        /// Reads what comes for a moment, then closes (FIN).
        case close
        /// Closes at once with a reset (RST).
        case reset
        /// Keeps the connection open (the fuzzer holds a few dozen such).
        case hold
    }

    public var stage: Stage
    public var bytes: [UInt8]
    public var ending: Ending
    /// The bytes go out in writes of these sizes (the rest in one last write).
    public var splits: [Int]
    /// Why a corpus entry is kept (what it once did).
    public var note: String?

    public init(stage: Stage, bytes: [UInt8], ending: Ending = .close, splits: [Int] = [], note: String? = nil) {
        self.stage = stage
        self.bytes = bytes
        self.ending = ending
        self.splits = splits
        self.note = note
    }

    public init(stage: Stage, text: String, ending: Ending = .close, note: String? = nil) {
        self.init(stage: stage, bytes: Array(text.utf8), ending: ending, note: note)
    }

    private enum CodingKeys: String, CodingKey {
        case stage, bytes, ending, splits, note
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        stage = try container.decode(Stage.self, forKey: .stage)
        let base64 = try container.decode(String.self, forKey: .bytes)
        guard let data = Data(base64Encoded: base64) else {
            throw DecodingError.dataCorruptedError(forKey: .bytes, in: container, debugDescription: "not base64")
        }
        bytes = Array(data)
        ending = try container.decodeIfPresent(Ending.self, forKey: .ending) ?? .close
        splits = try container.decodeIfPresent([Int].self, forKey: .splits) ?? []
        note = try container.decodeIfPresent(String.self, forKey: .note)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(stage, forKey: .stage)
        try container.encode(Data(bytes).base64EncodedString(), forKey: .bytes)
        try container.encode(ending, forKey: .ending)
        if !splits.isEmpty { try container.encode(splits, forKey: .splits) }
        try container.encodeIfPresent(note, forKey: .note)
    }

    public var description: String {
        let preview = String(decoding: bytes.prefix(160), as: UTF8.self).debugDescription
        return "\(stage.rawValue) (\(bytes.count) bytes, \(ending.rawValue)): \(preview)"
    }

    /// The cases of a corpus file: a JSON array of cases.
    public static func corpus(atPath path: String) throws -> [FuzzCase] {
        try JSONDecoder().decode([FuzzCase].self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// `cases` as a corpus file's JSON, one case a line.
    public static func corpusJSON(_ cases: [FuzzCase]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let lines = cases.compactMap { try? encoder.encode($0) }.map { "  " + String(decoding: $0, as: UTF8.self) }
        return "[\n" + lines.joined(separator: ",\n") + "\n]\n"
    }
}

/// SplitMix64: a small seeded generator, so that a run is repeated from its seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
