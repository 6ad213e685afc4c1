import BinTestKit
import Glibc

exit(BinTest.main(arguments: Array(CommandLine.arguments.dropFirst())))
