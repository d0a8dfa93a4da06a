module linepool.dev/kubeapiserver

go 1.24.0
