import Hummingbird
import NIOCore

/// The request context of every relay route: Hummingbird's core storage plus the connection's
/// channel, which a stream needs in order to abort a connection whose client stopped reading, and
/// the rate limiter needs for the client's address.
public struct RelayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = CoreRequestContextStorage(source: source)
        self.channel = source.channel
    }
}
