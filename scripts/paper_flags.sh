# Sourced by the train and sweep scripts: each benchmark's settings as the published train scripts give them (the
# paper's hyper-parameters), one array per benchmark, so that a single-process run and a cluster sweep use the same.
CIFAR100_FLAGS=(-e 0.00003 --model_name Net_SVD --model_type customnet_SVD --first_split_size 5 --other_split_size 5
  --train_aug --schedule 120 180 200 --batch_size 64 --dataset CIFAR100 --force_out_dim 0 --sparse_wt 0.1 0.4
  --benchmark --rand_split_order --grow_network --repeat 3 --exp_name CNet_CIFAR100_finalmodel)
MINIIMAGENET_FLAGS=(-e 0.00003 --model_name Net_SVD --model_type customnet_SVD --first_split_size 5
  --other_split_size 5 --train_aug --schedule 150 180 200 --batch_size 64 --dataset miniImageNet --force_out_dim 0
  --sparse_wt 0.1 --benchmark --rand_split_order --grow_network --repeat 3 --exp_name miniImageNet_final)
FIVE_DATASETS_FLAGS=(-e 0.00003 --model_name Net_SVD --model_type customnet_SVD --dataset multidataset
  --first_split_size 10 --other_split_size 10 --schedule 120 180 200 --batch_size 64 --sparse_wt 0.1 --benchmark
  --rand_split_order --grow_network --repeat 1 --exp_name 5sequencedataset)
