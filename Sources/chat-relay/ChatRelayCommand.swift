import ArgumentParser

/// `chat-relay`: serves a relay node (the default subcommand).
@main
struct ChatRelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-relay",
        abstract: "A chat relay: rooms over Server-Sent Events, messages over HTTP POST.",
        discussion: """
            Every flag falls back to the environment variable named in its help, then to its default.
            With no --redis-url the node runs alone on an embedded in-process broker.
            """,
        subcommands: [ServeCommand.self, BenchCommand.self, TokenCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
