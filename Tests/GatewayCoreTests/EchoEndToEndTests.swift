import Foundation
import Logging
import XCTest
@testable import GatewayCore

final class EchoEndToEndTests: XCTestCase {
    func testSingleEchoBothPollers() throws {
        for poller in PollerKind.allCases {
            var config = GatewayConfig()
            config.port = 0
            config.poller = poller
            config.maxConnections = 64
            let gateway = try Gateway(config: config)
            try gateway.start()
            let client = try TestClient(port: gateway.port)
            for seq in 0..<100 {
                let request = TestClient.frame(seq: UInt32(seq), bodySize: seq * 7)
                try client.send(request)
                XCTAssertEqual(client.receiveFrame(), request, "\(poller) seq \(seq)")
            }
            gateway.stop()
            XCTAssertEqual(gateway.stats().framesIn, 100)
        }
    }
}
