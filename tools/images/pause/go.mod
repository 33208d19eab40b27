module kstrata.dev/tools/images/pause

go 1.22
