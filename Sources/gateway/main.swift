import GatewayCLI

GatewayCommand.main()
