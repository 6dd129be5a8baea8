import Synchronization

/// A flag one task sets and others poll: "stop publishing", "done reading".
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public var isSet: Bool { flag.load(ordering: .relaxed) }

    public func set() { flag.store(true, ordering: .relaxed) }
}
